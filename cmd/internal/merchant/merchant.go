// Package merchant loads and validates the merchant configuration: who the
// ledger accepts notifications for, and the secrets to verify them with.
//
// The file is a JSON array:
//
//	[{"mch_id": "10000100", "appid": "wx2421b1c4370ec43b",
//	  "api_key": "...", "apiv3_key": "...",
//	  "wechatpay_public_key_id": "PUB_KEY_ID_...", "wechatpay_public_key": "pub_key.pem",
//	  "platform_certificates": ["wechatpay_cert.pem"], "appids": ["wx..."]}]
//
// Key and certificate paths are relative to the file. Any secret may be left
// out of the file and given in the environment instead:
// LEDGER_API_KEY_<mch_id> and LEDGER_APIV3_KEY_<mch_id> (these win over the
// file). Secrets are held as Secret, which never prints its value.
package merchant

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// ErrConfig marks every configuration error.
var ErrConfig = errors.New("merchant config")

// Secret is a string that never reaches logs: fmt, JSON and slog print a
// redaction. Use Reveal only where the value is needed for cryptography.
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

func (s Secret) String() string                { return s.redacted() }
func (s Secret) GoString() string              { return s.redacted() }
func (s Secret) LogValue() slog.Value          { return slog.StringValue(s.redacted()) }
func (s Secret) MarshalJSON() ([]byte, error)  { return json.Marshal(s.redacted()) }
func (s Secret) Format(f fmt.State, verb rune) { fmt.Fprint(f, s.redacted()) }
func (s Secret) redacted() string {
	if s.v == "" {
		return "(unset)"
	}
	return "[REDACTED]"
}

// Merchant is one configured merchant.
type Merchant struct {
	MchID  string
	AppID  string   // the main appid
	AppIDs []string // every appid orders may be placed under (AppID first)
	// APIKey is the v2 API key: verifies v2 payment notifications and is the
	// source of the v2 refund req_info key. Empty for a v3-only merchant,
	// whose v2 notifications are then refused.
	APIKey Secret
	// APIv3Key decrypts v3 notification resources (exactly 32 bytes).
	APIv3Key Secret
	// PublicKeys maps WeChat Pay public-key ids (PUB_KEY_ID_...) to PEM.
	PublicKeys map[string][]byte
	// Certificates are WeChat Pay platform certificates (PEM).
	Certificates [][]byte
}

// AllowsAppID reports whether appid belongs to this merchant: its AppID or
// one of AppIDs (a Merchant built in code may leave AppIDs empty).
func (m *Merchant) AllowsAppID(appid string) bool {
	if appid != "" && appid == m.AppID {
		return true
	}
	for _, a := range m.AppIDs {
		if a == appid {
			return true
		}
	}
	return false
}

// Registry finds merchants by mch_id. Read-only after Load: safe for
// concurrent use.
type Registry struct {
	byID map[string]*Merchant
}

// NewRegistry builds a registry from merchants (already validated).
func NewRegistry(ms ...*Merchant) *Registry {
	r := &Registry{byID: map[string]*Merchant{}}
	for _, m := range ms {
		r.byID[m.MchID] = m
	}
	return r
}

// Get returns the merchant with this mch_id.
func (r *Registry) Get(mchID string) (*Merchant, bool) {
	m, ok := r.byID[mchID]
	return m, ok
}

// IDs returns the configured mch_ids, sorted.
func (r *Registry) IDs() []string {
	ids := make([]string, 0, len(r.byID))
	for id := range r.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// All returns the merchants sorted by mch_id.
func (r *Registry) All() []*Merchant {
	var out []*Merchant
	for _, id := range r.IDs() {
		out = append(out, r.byID[id])
	}
	return out
}

type fileEntry struct {
	MchID                string   `json:"mch_id"`
	AppID                string   `json:"appid"`
	AppIDs               []string `json:"appids"`
	APIKey               string   `json:"api_key"`
	APIv3Key             string   `json:"apiv3_key"`
	PublicKeyID          string   `json:"wechatpay_public_key_id"`
	PublicKey            string   `json:"wechatpay_public_key"`
	PlatformCertificates []string `json:"platform_certificates"`
}

var (
	mchIDPattern = regexp.MustCompile(`^[0-9]{1,32}$`)
	appIDPattern = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)
	pubKeyID     = regexp.MustCompile(`^PUB_KEY_ID_[0-9A-Za-z_]+$`)
)

// Load reads and validates the merchant file at path; getenv supplies
// secrets from the environment (os.Getenv in production). Every problem is
// reported at once, never a secret's value.
func Load(path string, getenv func(string) string) (*Registry, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var entries []fileEntry
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("%w: %s: not a JSON array of merchants: %w", ErrConfig, path, err)
	}
	// Decode reads one value; anything after it (a second array left by a
	// bad merge, a stray bracket) would otherwise be dropped in silence.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s: unexpected data after the JSON array of merchants", ErrConfig, path)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: %s lists no merchant", ErrConfig, path)
	}
	dir := filepath.Dir(path)
	var problems []string
	var ms []*Merchant
	seen := map[string]bool{}
	for i, e := range entries {
		where := fmt.Sprintf("merchant #%d (mch_id %q)", i+1, e.MchID)
		bad := func(format string, args ...any) {
			problems = append(problems, where+": "+fmt.Sprintf(format, args...))
		}
		if !mchIDPattern.MatchString(e.MchID) {
			bad("mch_id must be 1-32 digits")
		}
		if seen[e.MchID] {
			bad("mch_id listed twice")
		}
		seen[e.MchID] = true
		m := &Merchant{MchID: e.MchID, AppID: e.AppID, PublicKeys: map[string][]byte{}}
		if !appIDPattern.MatchString(e.AppID) {
			bad("appid must be 1-32 letters, digits or _")
		}
		m.AppIDs = append(m.AppIDs, e.AppID)
		for _, a := range e.AppIDs {
			if !appIDPattern.MatchString(a) {
				bad("appids entry %q is not an appid", a)
			}
			if a != e.AppID {
				m.AppIDs = append(m.AppIDs, a)
			}
		}
		apiKey, apiKeyFrom := e.APIKey, "api_key"
		if v := getenv("LEDGER_API_KEY_" + e.MchID); v != "" {
			apiKey, apiKeyFrom = v, "LEDGER_API_KEY_"+e.MchID
		}
		apiv3, apiv3From := e.APIv3Key, "apiv3_key"
		if v := getenv("LEDGER_APIV3_KEY_" + e.MchID); v != "" {
			apiv3, apiv3From = v, "LEDGER_APIV3_KEY_"+e.MchID
		}
		m.APIKey, m.APIv3Key = NewSecret(apiKey), NewSecret(apiv3)
		if apiKey != "" && len(apiKey) != 32 {
			bad("%s must be the 32-character v2 API key, got %d characters", apiKeyFrom, len(apiKey))
		}
		if apiv3 != "" && len(apiv3) != 32 {
			bad("%s must be exactly 32 bytes, got %d", apiv3From, len(apiv3))
		}
		// Judged on what the entry configures, not on what could be read,
		// so that an unreadable key file and a missing apiv3_key are both
		// reported at once.
		wantsV3 := e.PublicKey != "" || e.PublicKeyID != "" || len(e.PlatformCertificates) > 0
		if e.PublicKey != "" || e.PublicKeyID != "" {
			if !pubKeyID.MatchString(e.PublicKeyID) {
				bad("wechatpay_public_key_id must look like PUB_KEY_ID_..., got %q", e.PublicKeyID)
			}
			if e.PublicKey == "" {
				bad("wechatpay_public_key (a PEM file) is missing for %s", e.PublicKeyID)
			} else if pem, err := os.ReadFile(resolve(dir, e.PublicKey)); err != nil {
				bad("wechatpay_public_key: %v", err)
			} else {
				m.PublicKeys[e.PublicKeyID] = pem
			}
		}
		for _, c := range e.PlatformCertificates {
			pem, err := os.ReadFile(resolve(dir, c))
			if err != nil {
				bad("platform_certificates: %v", err)
				continue
			}
			m.Certificates = append(m.Certificates, pem)
		}
		switch {
		case wantsV3 && apiv3 == "":
			bad("v3 keys are configured but apiv3_key is missing (in the file or LEDGER_APIV3_KEY_%s)", e.MchID)
		case !wantsV3 && apiv3 != "":
			bad("apiv3_key is set but no wechatpay_public_key or platform_certificates to verify v3 notifications with")
		case !wantsV3 && apiKey == "":
			bad("no key at all: set api_key (v2, in the file or LEDGER_API_KEY_%s) and/or the v3 keys", e.MchID)
		}
		ms = append(ms, m)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s:\n  %s", ErrConfig, path, strings.Join(problems, "\n  "))
	}
	return NewRegistry(ms...), nil
}

func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}
