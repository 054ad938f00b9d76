package merchant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/orderledger/orderledger/cmd/internal/merchant"
)

// Secrets of the tests. Each is distinctive, so that finding one in an
// error message or a log line is never a coincidence.
const (
	apiKeyA  = "APIKEYa0123456789abcdefghijklmno" // 32
	apiv3A   = "APIV3a0123456789abcdefghijklmnop" // 32
	apiKeyB  = "APIKEYb0123456789abcdefghijklmno" // 32
	envKey   = "ENVKEYz0123456789abcdefghijklmno" // 32
	envV3    = "ENVV3z0123456789abcdefghijklmnop" // 32
	pubKeyID = "PUB_KEY_ID_0119000001092025031400000000000001"
)

// write creates dir/name (and its folders) with content.
func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// env is a getenv over a map.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func noEnv(string) string { return "" }

func TestLoadValid(t *testing.T) {
	dir := t.TempDir()
	pubPEM := "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"
	certPEM := "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
	write(t, dir, "keys/pub_key.pem", pubPEM)
	write(t, dir, "certs/wechatpay.pem", certPEM)
	absCert := write(t, t.TempDir(), "elsewhere.pem", certPEM+"#2")
	path := write(t, dir, "merchants.json", `[
	  {"mch_id": "1900000109", "appid": "wx2421b1c4370ec43b", "appids": ["wx2421b1c4370ec43b", "wxd678efh567hg6787"],
	   "api_key": "`+apiKeyA+`", "apiv3_key": "`+apiv3A+`",
	   "wechatpay_public_key_id": "`+pubKeyID+`", "wechatpay_public_key": "keys/pub_key.pem",
	   "platform_certificates": ["certs/wechatpay.pem", "`+absCert+`"]},
	  {"mch_id": "1230000109", "appid": "wx8888888888888888", "api_key": "`+apiKeyB+`"},
	  {"mch_id": "1555555555", "appid": "wx3", "apiv3_key": "`+apiv3A+`", "platform_certificates": ["certs/wechatpay.pem"]}
	]`)
	// Relative paths are resolved against the file's folder, not the
	// working directory.
	t.Chdir(t.TempDir())

	reg, err := merchant.Load(path, noEnv)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := reg.IDs(); !slices.Equal(got, []string{"1230000109", "1555555555", "1900000109"}) {
		t.Errorf("IDs = %v, want sorted [1230000109 1555555555 1900000109]", got)
	}
	if all := reg.All(); len(all) != 3 || all[0].MchID != "1230000109" || all[2].MchID != "1900000109" {
		t.Errorf("All is not the merchants sorted by mch_id")
	}
	m, ok := reg.Get("1900000109")
	if !ok {
		t.Fatal("merchant 1900000109 missing")
	}
	if m.AppID != "wx2421b1c4370ec43b" || !slices.Equal(m.AppIDs, []string{"wx2421b1c4370ec43b", "wxd678efh567hg6787"}) {
		t.Errorf("AppID %q AppIDs %v, want the main appid first and no repeat", m.AppID, m.AppIDs)
	}
	if m.APIKey.Reveal() != apiKeyA || m.APIv3Key.Reveal() != apiv3A {
		t.Error("secrets not loaded from the file")
	}
	if got := string(m.PublicKeys[pubKeyID]); got != pubPEM {
		t.Errorf("PublicKeys[%s] = %q, want the PEM file", pubKeyID, got)
	}
	if len(m.Certificates) != 2 || string(m.Certificates[0]) != certPEM || string(m.Certificates[1]) != certPEM+"#2" {
		t.Errorf("Certificates = %q, want the relative then the absolute file", m.Certificates)
	}
	b, _ := reg.Get("1230000109")
	if b.APIKey.Reveal() != apiKeyB || !b.APIv3Key.IsZero() || len(b.PublicKeys) != 0 || len(b.Certificates) != 0 {
		t.Errorf("v2-only merchant loaded wrong: apiv3 set=%v keys=%d certs=%d", !b.APIv3Key.IsZero(), len(b.PublicKeys), len(b.Certificates))
	}
	if !slices.Equal(b.AppIDs, []string{"wx8888888888888888"}) {
		t.Errorf("AppIDs = %v, want just the main appid", b.AppIDs)
	}
	// A v3-only merchant has no v2 API key.
	v3only, _ := reg.Get("1555555555")
	if !v3only.APIKey.IsZero() || v3only.APIv3Key.Reveal() != apiv3A || len(v3only.Certificates) != 1 {
		t.Errorf("v3-only merchant loaded wrong: api key set=%v certs=%d", !v3only.APIKey.IsZero(), len(v3only.Certificates))
	}
	if _, ok := reg.Get("1"); ok {
		t.Error("Get found a merchant that is not configured")
	}
}

func TestLoadEnvironmentWins(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "pub.pem", "pem")
	path := write(t, dir, "merchants.json", `[
	  {"mch_id": "1900000109", "appid": "wx1", "api_key": "`+apiKeyA+`", "apiv3_key": "`+apiv3A+`",
	   "wechatpay_public_key_id": "`+pubKeyID+`", "wechatpay_public_key": "pub.pem"},
	  {"mch_id": "1230000109", "appid": "wx2",
	   "wechatpay_public_key_id": "`+pubKeyID+`", "wechatpay_public_key": "pub.pem"}
	]`)
	reg, err := merchant.Load(path, env(map[string]string{
		"LEDGER_API_KEY_1900000109":   envKey,
		"LEDGER_APIV3_KEY_1900000109": envV3,
		// The second merchant keeps every secret out of the file.
		"LEDGER_API_KEY_1230000109":   apiKeyB,
		"LEDGER_APIV3_KEY_1230000109": apiv3A,
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	a, _ := reg.Get("1900000109")
	if a.APIKey.Reveal() != envKey || a.APIv3Key.Reveal() != envV3 {
		t.Error("the environment did not win over the file")
	}
	b, _ := reg.Get("1230000109")
	if b.APIKey.Reveal() != apiKeyB || b.APIv3Key.Reveal() != apiv3A {
		t.Error("secrets given only in the environment were not used")
	}

	// A variable for another merchant does not help.
	_, err = merchant.Load(path, env(map[string]string{"LEDGER_API_KEY_1900000109": envKey, "LEDGER_APIV3_KEY_999": apiv3A}))
	if err == nil || !strings.Contains(err.Error(), "LEDGER_APIV3_KEY_1230000109") || strings.Contains(err.Error(), "#1 ") {
		t.Errorf("err = %v, want only the missing apiv3_key of 1230000109, named with its variable", err)
	}
}

// TestLoadReportsEveryProblem loads one file with a problem in every
// entry: the error lists them all, so an operator fixes the file in one go.
func TestLoadReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "cert.pem", "pem")
	path := write(t, dir, "merchants.json", `[
	  {"mch_id": "19000abc", "appid": "wx1", "api_key": "`+apiKeyA+`"},
	  {"mch_id": "1230000109", "appid": "wx2", "api_key": "`+apiKeyA+`"},
	  {"mch_id": "1230000109", "appid": "wx3", "api_key": "`+apiKeyB+`"},
	  {"mch_id": "1000000004", "appid": "wx4", "api_key": "short-`+apiKeyA[:10]+`"},
	  {"mch_id": "1000000005", "appid": "wx5", "api_key": "`+apiKeyA+`", "apiv3_key": "`+apiv3A[:20]+`"},
	  {"mch_id": "1000000006", "appid": "wx6", "api_key": "`+apiKeyA+`", "apiv3_key": "`+apiv3A+`",
	   "wechatpay_public_key_id": "`+pubKeyID+`", "wechatpay_public_key": "missing.pem"},
	  {"mch_id": "1000000007", "appid": "wx7", "api_key": "`+apiKeyA+`", "platform_certificates": ["cert.pem"]},
	  {"mch_id": "1000000008", "appid": "wx 8", "appids": ["bad appid!"]},
	  {"mch_id": "1000000009", "appid": "wx9", "api_key": "`+apiKeyA+`",
	   "wechatpay_public_key_id": "KEY_1", "wechatpay_public_key": "gone.pem"},
	  {"mch_id": "1000000010", "appid": "wx10", "api_key": "`+apiKeyA+`", "apiv3_key": "`+apiv3A+`"},
	  {"mch_id": "1000000011", "appid": "wx11", "wechatpay_public_key_id": "`+pubKeyID+`"}
	]`)
	_, err := merchant.Load(path, noEnv)
	if !errors.Is(err, merchant.ErrConfig) {
		t.Fatalf("err = %v, want merchant.ErrConfig", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`merchant #1 (mch_id "19000abc"): mch_id must be 1-32 digits`,
		`merchant #3 (mch_id "1230000109"): mch_id listed twice`,
		`merchant #4 (mch_id "1000000004"): api_key must be the 32-character v2 API key, got 16 characters`,
		`merchant #5 (mch_id "1000000005"): apiv3_key must be exactly 32 bytes, got 20`,
		`merchant #6 (mch_id "1000000006"): wechatpay_public_key: `,
		`missing.pem`,
		`merchant #7 (mch_id "1000000007"): v3 keys are configured but apiv3_key is missing`,
		`merchant #8 (mch_id "1000000008"): appid must be 1-32 letters, digits or _`,
		`merchant #8 (mch_id "1000000008"): appids entry "bad appid!" is not an appid`,
		`merchant #8 (mch_id "1000000008"): no key at all: set api_key (v2, in the file or LEDGER_API_KEY_1000000008)`,
		`merchant #9 (mch_id "1000000009"): wechatpay_public_key_id must look like PUB_KEY_ID_..., got "KEY_1"`,
		`merchant #9 (mch_id "1000000009"): wechatpay_public_key: `,
		// The key file cannot be read AND there is no apiv3 key: both are said.
		`merchant #9 (mch_id "1000000009"): v3 keys are configured but apiv3_key is missing`,
		`merchant #10 (mch_id "1000000010"): apiv3_key is set but no wechatpay_public_key or platform_certificates`,
		`merchant #11 (mch_id "1000000011"): wechatpay_public_key (a PEM file) is missing for ` + pubKeyID,
		`merchant #11 (mch_id "1000000011"): v3 keys are configured but apiv3_key is missing`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q; got:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "merchant #2 ") {
		t.Errorf("merchant #2 is valid (the repeat is #3), got:\n%s", msg)
	}
	assertNoSecret(t, msg)
}

func TestLoadRefusesTheWholeFile(t *testing.T) {
	valid := `{"mch_id": "1900000109", "appid": "wx1", "api_key": "` + apiKeyA + `"}`
	for _, tc := range []struct {
		name, content, want string
	}{
		{"unknown field", `[{"mch_id": "1900000109", "appid": "wx1", "api_key": "` + apiKeyA + `", "apiv3key": "` + apiv3A + `"}]`, `unknown field "apiv3key"`},
		{"empty array", `[]`, "lists no merchant"},
		{"null", `null`, "lists no merchant"},
		{"not JSON", `mch_id = 1900000109`, "not a JSON array of merchants"},
		{"an object, not an array", valid, "not a JSON array of merchants"},
		{"secret of the wrong type", `[{"mch_id": "1900000109", "appid": "wx1", "api_key": ["` + apiKeyA + `"]}]`, "api_key"},
		{"bad escape inside a secret", `[{"mch_id": "1900000109", "appid": "wx1", "api_key": "` + apiKeyA[:8] + `\q` + apiKeyA[8:] + `"}]`, "not a JSON array"},
		{"truncated", `[` + valid, "not a JSON array of merchants"},
		{"trailing data", `[` + valid + `]]`, "after the JSON array"},
		{"a second array", `[` + valid + `] [` + valid + `]`, "after the JSON array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, t.TempDir(), "merchants.json", tc.content)
			reg, err := merchant.Load(path, noEnv)
			if !errors.Is(err, merchant.ErrConfig) || reg != nil {
				t.Fatalf("Load = %v, %v; want nil and merchant.ErrConfig", reg, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
			assertNoSecret(t, err.Error())
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := merchant.Load(filepath.Join(t.TempDir(), "nope.json"), noEnv)
		if !errors.Is(err, merchant.ErrConfig) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v, want merchant.ErrConfig wrapping os.ErrNotExist", err)
		}
	})
}

// TestLoadErrorsNeverContainSecrets: whatever is wrong with a secret, the
// error says what, never the value (error messages reach logs).
func TestLoadErrorsNeverContainSecrets(t *testing.T) {
	long := apiKeyA + "X"
	path := write(t, t.TempDir(), "merchants.json", `[
	  {"mch_id": "1900000109", "appid": "wx1", "api_key": "`+long+`", "apiv3_key": "`+apiv3A+`tail"},
	  {"mch_id": "1230000109", "appid": "wx2", "api_key": "`+apiKeyB+`"}
	]`)
	_, err := merchant.Load(path, env(map[string]string{
		"LEDGER_APIV3_KEY_1230000109": envV3 + "!!", // wrong length, from the environment
	}))
	if err == nil {
		t.Fatal("Load accepted secrets of the wrong length")
	}
	msg := err.Error()
	for _, s := range []string{long, apiv3A, envV3, apiKeyB} {
		if strings.Contains(msg, s) || strings.Contains(msg, s[:16]) {
			t.Errorf("error reveals a secret (%.6s...):\n%s", s, msg)
		}
	}
	if !strings.Contains(msg, "api_key must be the 32-character v2 API key, got 33 characters") ||
		!strings.Contains(msg, "#1 (mch_id \"1900000109\"): apiv3_key must be exactly 32 bytes, got 36") ||
		!strings.Contains(msg, "LEDGER_APIV3_KEY_1230000109 must be exactly 32 bytes, got 34") {
		t.Errorf("error does not say what is wrong:\n%s", msg)
	}
}

// assertNoSecret fails if s holds any of the test secrets, or a long
// enough piece of one.
func assertNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{apiKeyA, apiv3A, apiKeyB, envKey, envV3} {
		if strings.Contains(s, secret[:12]) {
			t.Errorf("output reveals a secret (%.6s...):\n%s", secret, s)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := merchant.NewSecret(apiKeyA)
	if s.Reveal() != apiKeyA || s.IsZero() {
		t.Fatal("Reveal does not give the value back")
	}
	m := &merchant.Merchant{MchID: "1900000109", AppID: "wx1", APIKey: s, APIv3Key: merchant.NewSecret(apiv3A)}
	holder := struct {
		Key  merchant.Secret
		Ptr  *merchant.Secret
		Keys []merchant.Secret
		ByID map[string]merchant.Secret
	}{s, &s, []merchant.Secret{s}, map[string]merchant.Secret{"k": s}}

	var outputs []string
	for _, verb := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x", "%X", "%d", "%T %[1]v", "%10s", "%-40v"} {
		for _, v := range []any{s, &s, holder, *m, m} {
			outputs = append(outputs, fmt.Sprintf(verb, v))
		}
	}
	outputs = append(outputs, fmt.Sprint(s, m), fmt.Sprintln(s, *m), s.String(), s.GoString(),
		fmt.Errorf("verify with %v: %w", s, errors.New("bad sign")).Error())

	for _, v := range []any{s, &s, holder, *m, m} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		outputs = append(outputs, string(b))
	}
	if b, _ := json.Marshal(s); string(b) != `"[REDACTED]"` {
		t.Errorf("json.Marshal(secret) = %s, want \"[REDACTED]\"", b)
	}

	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		log := slog.New(h(&buf))
		log.Info("loaded", "key", s, "ptr", &s, "merchant", m, "holder", holder)
		log.Info("attr", slog.Any("key", s), slog.Group("g", slog.Any("key", s)))
		log.With("key", s).Info("with")
		log.LogAttrs(context.Background(), slog.LevelInfo, "attrs", slog.Any("key", s), slog.Any("m", *m))
		outputs = append(outputs, buf.String())
		if !strings.Contains(buf.String(), "[REDACTED]") {
			t.Errorf("log output shows no redaction:\n%s", buf.String())
		}
	}

	for _, out := range outputs {
		if strings.Contains(out, apiKeyA) || strings.Contains(out, apiv3A) ||
			strings.Contains(out, apiKeyA[:12]) || strings.Contains(out, "4150494b4559") /* hex of "APIKEY" */ {
			t.Errorf("secret printed: %s", out)
		}
	}
	if got := fmt.Sprintf("%v|%s|%+v|%#v", s, s, s, s); got != "[REDACTED]|[REDACTED]|[REDACTED]|[REDACTED]" {
		t.Errorf("formatted secret = %q, want [REDACTED] for every verb", got)
	}

	var unset merchant.Secret
	if !unset.IsZero() || unset.Reveal() != "" || fmt.Sprint(unset) != "(unset)" {
		t.Errorf("zero Secret: IsZero=%v Reveal=%q prints %q, want true, empty, (unset)", unset.IsZero(), unset.Reveal(), fmt.Sprint(unset))
	}
}

func TestAllowsAppID(t *testing.T) {
	m := &merchant.Merchant{MchID: "1900000109", AppID: "wxmain", AppIDs: []string{"wxmain", "wxmini"}}
	for appid, want := range map[string]bool{"wxmain": true, "wxmini": true, "wxother": false, "": false, "WXMAIN": false} {
		if got := m.AllowsAppID(appid); got != want {
			t.Errorf("AllowsAppID(%q) = %v, want %v", appid, got, want)
		}
	}
	// A merchant built in code with only its main appid allows it.
	bare := &merchant.Merchant{MchID: "1900000109", AppID: "wxmain"}
	if !bare.AllowsAppID("wxmain") || bare.AllowsAppID("") || bare.AllowsAppID("wxmini") {
		t.Error("a merchant without AppIDs must allow exactly its AppID")
	}

	// Loaded from a file, the extra appids are allowed too.
	path := write(t, t.TempDir(), "merchants.json",
		`[{"mch_id": "1900000109", "appid": "wxmain", "appids": ["wxmini", "wxapp"], "api_key": "`+apiKeyA+`"}]`)
	reg, err := merchant.Load(path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	loaded, _ := reg.Get("1900000109")
	for _, a := range []string{"wxmain", "wxmini", "wxapp"} {
		if !loaded.AllowsAppID(a) {
			t.Errorf("loaded merchant refuses %s", a)
		}
	}
	if loaded.AllowsAppID("wxelse") {
		t.Error("loaded merchant allows an appid it does not list")
	}
}
