package wechatpay

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"
)

// v3Vec is one v3 vector folder.
type v3Vec struct {
	body []byte
	h    http.Header
	key  []byte
}

func loadV3(t testing.TB, dir string) v3Vec {
	t.Helper()
	return v3Vec{body: vec(t, dir+"/body.json"), h: vecHeaders(t, dir+"/headers.json"), key: vecKey(t, dir+"/apiv3_key.txt")}
}

// synthVerifier knows the synthetic vectors' signer both as a platform
// certificate and as a WeChat Pay public key (one merchant mid-migration).
func synthVerifier(t testing.TB) *V3Verifier {
	t.Helper()
	v := NewV3Verifier()
	v.Now = fixedNow(synthV3Time)
	if err := v.AddCertificatePEM(vec(t, "synthetic/v3_transaction_success_cert/platform_cert.pem")); err != nil {
		t.Fatal(err)
	}
	if err := v.AddPublicKeyPEM(synthPubKey, vec(t, "synthetic/v3_transaction_success_pubkey/pub_key.pem")); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestV3VerifyVectors(t *testing.T) {
	synth := synthVerifier(t)
	wxgo := NewV3Verifier()
	wxgo.Now = fixedNow(1624523846)
	if err := wxgo.AddCertificatePEM(vec(t, "v3_wechatpay_go_notify/platform_cert.pem")); err != nil {
		t.Fatal(err)
	}
	// yansongda's test signs with a key whose certificate file carries
	// another serial than the header's: register the key under the header's.
	yc, err := LoadCertificatePEM(vec(t, "v3_yansongda_callback/platform_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	yan := NewV3Verifier()
	yan.Now = fixedNow(1626444144)
	if err := yan.AddKey("45F59D4DABF31918AFCEC556D5D2C6E376675D57", yc.PublicKey.(*rsa.PublicKey)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir  string
		v    *V3Verifier
		want error
	}{
		{"synthetic/v3_transaction_success_cert", synth, nil},
		{"synthetic/v3_transaction_success_pubkey", synth, nil},
		{"synthetic/v3_refund_success_cert", synth, nil},
		{"v3_wechatpay_go_notify", wxgo, nil},
		{"v3_yansongda_callback", yan, nil},
		{"synthetic/neg_v3_reserialized_body", synth, ErrBadSignature},
		{"synthetic/neg_v3_signtest_probe", synth, ErrSignatureProbe},
		{"synthetic/v3_transaction_success_cert", wxgo, ErrStaleTimestamp},
		{"v3_wechatpay_go_notify", synth, ErrStaleTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			x := loadV3(t, tt.dir)
			err := tt.v.Verify(x.h, x.body)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	if got := synth.Serials(); len(got) != 2 || got[0] != synthSerial || got[1] != synthPubKey {
		t.Errorf("Serials = %q", got)
	}
	if !synth.HasSerial(synthPubKey) || synth.HasSerial("nope") {
		t.Error("HasSerial")
	}
}

// The yansongda body keeps PHP's "\/" escapes; the same JSON with "/"
// is another byte string and must fail.
func TestV3VerifyRawBytesOnly(t *testing.T) {
	x := loadV3(t, "v3_yansongda_callback")
	if !bytes.Contains(x.body, []byte(`\/`)) {
		t.Fatal(`vector lost its \/ escapes`)
	}
	yc, _ := LoadCertificatePEM(vec(t, "v3_yansongda_callback/platform_cert.pem"))
	v := NewV3Verifier()
	v.Now = fixedNow(1626444144)
	_ = v.AddKey(x.h.Get(HeaderSerial), yc.PublicKey.(*rsa.PublicKey))
	if err := v.Verify(x.h, bytes.ReplaceAll(x.body, []byte(`\/`), []byte(`/`))); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("unescaped body: %v", err)
	}
	s := loadV3(t, "synthetic/v3_transaction_success_cert")
	for _, mutate := range []func([]byte) []byte{
		func(b []byte) []byte { return append(b, '\n') },
		func(b []byte) []byte { return append([]byte(" "), b...) },
		func(b []byte) []byte { c := bytes.Clone(b); c[10] ^= 1; return c },
	} {
		if err := synthVerifier(t).Verify(s.h, mutate(s.body)); !errors.Is(err, ErrBadSignature) {
			t.Errorf("mutated body: %v", err)
		}
	}
}

func TestV3VerifyTimestampWindow(t *testing.T) {
	x := loadV3(t, "synthetic/v3_transaction_success_cert")
	v := synthVerifier(t)
	for _, tt := range []struct {
		offset int64
		ok     bool
	}{{0, true}, {299, true}, {-299, true}, {300, false}, {-300, false}, {3600, false}, {-86400, false}} {
		v.Now = fixedNow(synthV3Time + tt.offset)
		err := v.Verify(x.h, x.body)
		if tt.ok != (err == nil) || (!tt.ok && !errors.Is(err, ErrStaleTimestamp)) {
			t.Errorf("now = ts%+d: %v", tt.offset, err)
		}
	}
	v.Now = fixedNow(synthV3Time)
	for _, ts := range []string{"", "abc", "-1735689600", "+1735689600", "1735689600.0", " 1735689600", "99999999999999999999", "0x676"} {
		h := x.h.Clone()
		h.Set(HeaderTimestamp, ts)
		err := v.Verify(h, x.body)
		if ts == "" {
			if !errors.Is(err, ErrMissingSignature) {
				t.Errorf("timestamp %q: %v", ts, err)
			}
		} else if !errors.Is(err, ErrStaleTimestamp) {
			t.Errorf("timestamp %q: %v", ts, err)
		}
	}
	// Default clock is the real one: a 2025 vector is stale now.
	v.Now = nil
	if err := v.Verify(x.h, x.body); !errors.Is(err, ErrStaleTimestamp) {
		t.Errorf("real clock: %v", err)
	}
}

func TestV3VerifyHeaderRefusals(t *testing.T) {
	x := loadV3(t, "synthetic/v3_transaction_success_cert")
	v := synthVerifier(t)
	for _, name := range []string{HeaderSerial, HeaderSignature, HeaderTimestamp, HeaderNonce} {
		h := x.h.Clone()
		h.Del(name)
		if err := v.Verify(h, x.body); !errors.Is(err, ErrMissingSignature) || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: %v", name, err)
		}
	}
	h := x.h.Clone()
	h.Del(HeaderSignatureType)
	if err := v.Verify(h, x.body); err != nil {
		t.Errorf("absent signature type means RSA: %v", err)
	}
	for _, st := range []string{"WECHATPAY2-SM2-WITH-SM3", "wechatpay2-sha256-rsa2048", "RSA"} {
		h := x.h.Clone()
		h.Set(HeaderSignatureType, st)
		if err := v.Verify(h, x.body); !errors.Is(err, ErrUnsupportedSignType) {
			t.Errorf("type %q: %v", st, err)
		}
	}
	h = x.h.Clone()
	h.Set(HeaderSerial, "5AD141C1086A7945A1394A8AEAA9EB0619751859")
	if err := v.Verify(h, x.body); !errors.Is(err, ErrUnknownSerial) {
		t.Errorf("unknown serial: %v", err)
	}
	// The right key under the wrong name is still a failure: the
	// certificate's serial does not cover the public-key id.
	h = x.h.Clone()
	h.Set(HeaderSerial, "PUB_KEY_ID_0100000000000000000000000000000002")
	if err := v.Verify(h, x.body); !errors.Is(err, ErrUnknownSerial) {
		t.Errorf("other key id: %v", err)
	}
	for _, sig := range []string{"!!!not base64!!!", "AAAA", base64.StdEncoding.EncodeToString(make([]byte, 256)), "WECHATPAY/SIGNTEST", "=="} {
		h := x.h.Clone()
		h.Set(HeaderSignature, sig)
		if err := v.Verify(h, x.body); !errors.Is(err, ErrBadSignature) {
			t.Errorf("signature %q: %v", sig, err)
		}
	}
	h = x.h.Clone()
	h.Set(HeaderSignature, "WECHATPAY/SIGNTEST/abc")
	if err := v.Verify(h, x.body); !errors.Is(err, ErrSignatureProbe) {
		t.Errorf("probe: %v", err)
	}
	// A probe is recognised even with a stale timestamp, so it is logged as a probe.
	v.Now = fixedNow(0)
	if err := v.Verify(h, x.body); !errors.Is(err, ErrSignatureProbe) {
		t.Errorf("stale probe: %v", err)
	}
}

func TestV3VerifierAddRefusals(t *testing.T) {
	v := NewV3Verifier()
	pub, err := LoadPublicKeyPEM(vec(t, "synthetic/v3_transaction_success_pubkey/pub_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.AddPublicKey("440024045C4A", pub); !errors.Is(err, ErrBadKey) {
		t.Errorf("id without prefix: %v", err)
	}
	if err := v.AddPublicKey("PUB_KEY_ID_", pub); !errors.Is(err, ErrBadKey) {
		t.Errorf("bare prefix: %v", err)
	}
	if err := v.AddKey("", pub); !errors.Is(err, ErrBadKey) {
		t.Errorf("empty serial: %v", err)
	}
	if err := v.AddKey("S", nil); !errors.Is(err, ErrBadKey) {
		t.Errorf("nil key: %v", err)
	}
	if err := v.AddPublicKeyPEM(synthPubKey, vec(t, "synthetic/v3_transaction_success_cert/platform_cert.pem")); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "CERTIFICATE") {
		t.Errorf("certificate given as public key: %v", err)
	}
	if err := v.AddCertificatePEM(vec(t, "synthetic/v3_transaction_success_pubkey/pub_key.pem")); !errors.Is(err, ErrBadKey) {
		t.Errorf("public key given as certificate: %v", err)
	}
	var zero V3Verifier // the zero value works too
	if err := zero.AddPublicKey(synthPubKey, pub); err != nil {
		t.Errorf("zero verifier: %v", err)
	}
}

func TestParseV3Envelope(t *testing.T) {
	env, err := ParseV3Envelope(vec(t, "synthetic/v3_transaction_success_cert/body.json"))
	if err != nil {
		t.Fatal(err)
	}
	if env.ID != "EV-2018022511223320873" || env.EventType != "TRANSACTION.SUCCESS" || env.ResourceType != "encrypt-resource" ||
		env.Summary != "支付成功" || env.Resource.OriginalType != "transaction" || env.Resource.AssociatedData != "transaction" ||
		env.Resource.Nonce != "fdasflkja484" || env.Resource.Algorithm != AlgorithmAESGCM {
		t.Errorf("%+v", env)
	}
	if !env.CreateTime.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("CreateTime %v", env.CreateTime)
	}
	for _, rel := range []string{"samples_without_key/v3_transaction_notify_real_rust_test.json", "v3_wechatpay_go_notify/body.json", "synthetic/neg_v3_reserialized_body/body.json"} {
		if _, err := ParseV3Envelope(vec(t, rel)); err != nil {
			t.Errorf("%s: %v", rel, err)
		}
	}
}

func TestParseV3EnvelopeRefusals(t *testing.T) {
	good := string(vec(t, "synthetic/v3_transaction_success_cert/body.json"))
	tests := []struct {
		name, body, field string
	}{
		{"not_json", "<xml/>", ""},
		{"empty", "", ""},
		{"array", "[]", ""},
		{"null", "null", "id"},
		{"trailing_data", good + "{}", ""},
		{"invalid_utf8", strings.Replace(good, "支付成功", "\xff", 1), ""},
		{"no_id", strings.Replace(good, `"id":"EV-2018022511223320873",`, "", 1), "id"},
		{"no_event_type", strings.Replace(good, `"event_type":"TRANSACTION.SUCCESS",`, "", 1), "event_type"},
		{"bad_create_time", strings.Replace(good, "2025-01-01T08:00:00+08:00", "2025-01-01 08:00:00", 1), "create_time"},
		{"other_algorithm", strings.Replace(good, "AEAD_AES_256_GCM", "AEAD_SM4_GCM", 1), "algorithm"},
		{"no_resource", `{"id":"x","create_time":"2025-01-01T08:00:00+08:00","event_type":"E"}`, "resource"},
		{"short_nonce", strings.Replace(good, "fdasflkja484", "fdasflkja48", 1), "nonce"},
		{"non_ascii_nonce", strings.Replace(good, "fdasflkja484", "fdasflkja48中", 1), "nonce"},
		{"ciphertext_not_base64", strings.Replace(good, `"ciphertext":"Y/YE`, `"ciphertext":"%%%%`, 1), "ciphertext"},
		{"ciphertext_number", strings.Replace(good, `"associated_data":"transaction"`, `"associated_data":1`, 1), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseV3Envelope([]byte(tt.body))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want ErrMalformed naming %q", err, tt.field)
			}
		})
	}
	// The yansongda body is a cut-down envelope (no id, event_type, create_time).
	if _, err := ParseV3Envelope(vec(t, "v3_yansongda_callback/body.json")); !errors.Is(err, ErrMalformed) {
		t.Errorf("yansongda: %v", err)
	}
}

func TestDecryptV3ResourceVectors(t *testing.T) {
	for _, dir := range []string{"synthetic/v3_transaction_success_cert", "synthetic/v3_transaction_success_pubkey", "synthetic/v3_refund_success_cert"} {
		x := loadV3(t, dir)
		env, err := ParseV3Envelope(x.body)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := DecryptV3Resource(env, x.key)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if want := bytes.TrimSpace(vec(t, dir+"/expected_plaintext.json")); !bytes.Equal(plain, want) {
			t.Errorf("%s: plaintext\n%s\nwant\n%s", dir, plain, want)
		}
	}
	// Decrypting is not authenticating: the re-serialized body fails
	// Verify but its resource still decrypts.
	x := loadV3(t, "synthetic/neg_v3_reserialized_body")
	env, err := ParseV3Envelope(x.body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecryptV3Resource(env, x.key); err != nil {
		t.Errorf("reserialized: %v", err)
	}
}

// yansongda's callback resource (AAD "certificate") decrypts to a real
// WeChat Pay platform certificate, read through the \/ escapes.
func TestDecryptV3ResourceYansongda(t *testing.T) {
	var env V3Envelope
	if err := json.Unmarshal(vec(t, "v3_yansongda_callback/body.json"), &env); err != nil {
		t.Fatal(err)
	}
	plain, err := DecryptV3Resource(env, []byte(yansongdaKey))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := LoadCertificatePEM(plain)
	if err != nil {
		t.Fatalf("plaintext is not a certificate: %v", err)
	}
	if !strings.Contains(cert.Subject.CommonName, "Tenpay") {
		t.Errorf("subject %v", cert.Subject)
	}
	if err := CheckPlatformCertificate(cert, "1600314068"); err != nil {
		t.Errorf("real platform certificate refused: %v", err)
	}
}

// wechatpay-go's test key "testMchAPIv3Key0" has 16 bytes (AES-128-GCM);
// APIv3 keys are 32 bytes, so DecryptV3Resource refuses it, although the
// vector's signature verifies (TestV3VerifyVectors).
func TestDecryptV3ResourceWechatpayGo(t *testing.T) {
	x := loadV3(t, "v3_wechatpay_go_notify")
	env, err := ParseV3Envelope(x.body)
	if err != nil {
		t.Fatal(err)
	}
	if env.Resource.AssociatedData != "payscore" {
		t.Errorf("AAD %q", env.Resource.AssociatedData)
	}
	if _, err := DecryptV3Resource(env, x.key); !errors.Is(err, ErrBadKey) || !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("16-byte key: %v", err)
	}
	// The vector itself is sound: the SDK opens it with AES-128.
	r := env.Resource
	plain, err := utils.DecryptAES256GCM(string(x.key), r.AssociatedData, r.Nonce, r.Ciphertext)
	if err != nil || !json.Valid([]byte(plain)) {
		t.Fatalf("SDK: %v", err)
	}
}

func TestDecryptV3ResourceRefusals(t *testing.T) {
	x := loadV3(t, "synthetic/v3_transaction_success_cert")
	env, err := ParseV3Envelope(x.body)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(*V3Resource)) V3Envelope { e := env; f(&e.Resource); return e }
	tests := []struct {
		name string
		env  V3Envelope
		key  []byte
	}{
		{"wrong_key", env, []byte(strings.Repeat("k", 32))},
		{"short_key", env, x.key[:31]},
		{"long_key", env, append(bytes.Clone(x.key), 'x')},
		{"wrong_aad", edit(func(r *V3Resource) { r.AssociatedData = "refund" }), x.key},
		{"empty_aad", edit(func(r *V3Resource) { r.AssociatedData = "" }), x.key},
		{"wrong_nonce", edit(func(r *V3Resource) { r.Nonce = "fdasflkja485" }), x.key},
		{"short_nonce", edit(func(r *V3Resource) { r.Nonce = "fdas" }), x.key},
		{"other_algorithm", edit(func(r *V3Resource) { r.Algorithm = "AES_256_CBC" }), x.key},
		{"truncated", edit(func(r *V3Resource) { r.Ciphertext = r.Ciphertext[:len(r.Ciphertext)-8] }), x.key},
		{"too_short_for_tag", edit(func(r *V3Resource) { r.Ciphertext = "AAAA" }), x.key},
		{"empty_ciphertext", edit(func(r *V3Resource) { r.Ciphertext = "" }), x.key},
		{"not_base64", edit(func(r *V3Resource) { r.Ciphertext = "%%%" }), x.key},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := DecryptV3Resource(tt.env, tt.key); !errors.Is(err, ErrUndecryptable) {
				t.Fatalf("= %q, %v; want ErrUndecryptable", p, err)
			}
		})
	}
}

// An empty associated_data is legal: WeChat says it may be empty.
func TestDecryptV3ResourceEmptyAAD(t *testing.T) {
	key := []byte(synthV3Key)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	ct := gcm.Seal(nil, []byte("123456789012"), []byte(`{"a":1}`), nil)
	env := V3Envelope{Resource: V3Resource{Algorithm: AlgorithmAESGCM, Nonce: "123456789012", Ciphertext: base64.StdEncoding.EncodeToString(ct)}}
	if p, err := DecryptV3Resource(env, key); err != nil || string(p) != `{"a":1}` {
		t.Fatalf("%q, %v", p, err)
	}
}

func TestDecodeV3Transaction(t *testing.T) {
	tx, err := DecodeV3Transaction(vec(t, "synthetic/v3_transaction_success_cert/expected_plaintext.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tx.PromotionDetail) == 0 || !json.Valid(tx.PromotionDetail) {
		t.Errorf("promotion_detail not kept: %s", tx.PromotionDetail)
	}
	ev := domain.Evidence{Channel: "wechatpay-v3-notify"}
	p := tx.Payment(ev)
	paid := time.Date(2025, 1, 1, 7, 59, 58, 0, domain.Beijing)
	if p.MchID != "1900000109" || p.AppID != "wxd678efh567hg6787" || p.OutTradeNo != "1217752501201407033233368018" ||
		p.TransactionID != "4200000000202501010000000001" || p.TotalFee != 100 || p.CashFee != 90 || p.CouponFee != 10 ||
		p.FeeType != "CNY" || p.TradeType != "JSAPI" || p.BankType != "OTHERS" || p.OpenID != "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" ||
		p.ResultCode != "SUCCESS" || !p.PaidAt.Equal(paid) || p.Evidence.Channel != ev.Channel {
		t.Errorf("Payment = %+v", p)
	}
	if _, off := p.PaidAt.Zone(); off != 8*3600 {
		t.Errorf("PaidAt offset %d", off)
	}
	tx, err = DecodeV3Transaction(vec(t, "samples_without_key/v3_transaction_plaintext_real_js_test.json"))
	if err != nil {
		t.Fatal(err)
	}
	if p := tx.Payment(ev); p.TotalFee != 400 || p.CashFee != 400 || p.CouponFee != 0 || p.Attach != "" {
		t.Errorf("real sample: %+v", p)
	}
}

func TestDecodeV3TransactionStates(t *testing.T) {
	base := `{"mchid":"1","appid":"wx1","out_trade_no":"o","trade_state":"CLOSED","trade_state_desc":"已关闭","amount":{"total":100}}`
	tx, err := DecodeV3Transaction([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	p := tx.Payment(domain.Evidence{})
	if p.ResultCode != "FAIL" || p.ErrCode != "CLOSED" || p.ErrCodeDes != "已关闭" || p.FeeType != "CNY" || p.CashFee != 100 {
		t.Errorf("%+v", p)
	}
}

func TestDecodeV3TransactionInvalid(t *testing.T) {
	good := string(vec(t, "synthetic/v3_transaction_success_cert/expected_plaintext.json"))
	tests := []struct{ name, body, field string }{
		{"not_json", "nope", "JSON"},
		{"no_total", strings.Replace(good, `"total":100,`, "", 1), "amount.total"},
		{"total_string", strings.Replace(good, `"total":100`, `"total":"100"`, 1), "amount.total"},
		{"total_float", strings.Replace(good, `"total":100`, `"total":100.5`, 1), "amount.total"},
		{"total_negative", strings.Replace(good, `"total":100`, `"total":-1`, 1), "amount.total"},
		{"payer_total_negative", strings.Replace(good, `"payer_total":90`, `"payer_total":-90`, 1), "amount.payer_total"},
		{"no_out_trade_no", strings.Replace(good, `"out_trade_no":"1217752501201407033233368018",`, "", 1), "out_trade_no"},
		{"no_mchid", strings.Replace(good, `"mchid":"1900000109",`, "", 1), "mchid"},
		{"unknown_state", strings.Replace(good, `"trade_state":"SUCCESS"`, `"trade_state":"DONE"`, 1), "trade_state"},
		{"no_success_time", strings.Replace(good, `"success_time":"2025-01-01T07:59:58+08:00",`, "", 1), "success_time"},
		{"bad_success_time", strings.Replace(good, `2025-01-01T07:59:58+08:00`, `2025-01-01 07:59:58`, 1), "success_time"},
		{"bad_currency", strings.Replace(good, `"currency":"CNY"`, `"currency":"yuan"`, 1), "currency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeV3Transaction([]byte(tt.body))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want ErrInvalid naming %s", err, tt.field)
			}
		})
	}
}

func TestDecodeV3Refund(t *testing.T) {
	r, err := DecodeV3Refund(vec(t, "synthetic/v3_refund_success_cert/expected_plaintext.json"))
	if err != nil {
		t.Fatal(err)
	}
	d := r.Refund(domain.Evidence{Channel: "wechatpay-v3-notify"})
	if d.MchID != "1900000109" || d.OutTradeNo != "1217752501201407033233368018" || d.TransactionID != "4200000000202501010000000001" ||
		d.OutRefundNo != "1217752501201407033233368019" || d.RefundID != "50000000382019052709732678859" || d.Status != domain.RefundStatusSuccess ||
		d.TotalFee != 100 || d.RefundFee != 50 || d.PayerTotal != 90 || d.PayerRefund != 45 || d.ReceivedAccount != "支付用户零钱" ||
		!d.SucceededAt.Equal(time.Date(2025, 1, 1, 9, 0, 0, 0, domain.Beijing)) {
		t.Errorf("Refund = %+v", d)
	}
	good := string(vec(t, "synthetic/v3_refund_success_cert/expected_plaintext.json"))
	for _, tt := range []struct{ name, body, field string }{
		{"no_refund_amount", strings.Replace(good, `"refund":50,`, "", 1), "amount.refund"},
		{"processing", strings.Replace(good, `"refund_status":"SUCCESS"`, `"refund_status":"PROCESSING"`, 1), "refund_status"},
		{"no_refund_id", strings.Replace(good, `"refund_id":"50000000382019052709732678859",`, "", 1), "refund_id"},
		{"success_without_time", strings.Replace(good, `"success_time":"2025-01-01T09:00:00+08:00",`, "", 1), "success_time"},
	} {
		if _, err := DecodeV3Refund([]byte(tt.body)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	closed := strings.Replace(strings.Replace(good, `"refund_status":"SUCCESS"`, `"refund_status":"CLOSED"`, 1), `"success_time":"2025-01-01T09:00:00+08:00",`, "", 1)
	if r, err := DecodeV3Refund([]byte(closed)); err != nil || r.Refund(domain.Evidence{}).Status != domain.RefundStatusClosed {
		t.Errorf("closed: %v", err)
	}
}

func TestConfigChecks(t *testing.T) {
	if err := CheckAPIv3Key(synthV3Key); err != nil {
		t.Error(err)
	}
	if err := CheckAPIKey(docKey); err != nil {
		t.Error(err)
	}
	for _, k := range []string{"", "testMchAPIv3Key0", synthV3Key + "x", strings.Repeat("k", 31) + " ", strings.Repeat("键", 11)[:32]} {
		err := CheckAPIv3Key(k)
		if !errors.Is(err, ErrBadKey) {
			t.Errorf("CheckAPIv3Key(len %d) = %v", len(k), err)
		}
		if k != "" && strings.Contains(err.Error(), k) {
			t.Errorf("error shows the key: %v", err)
		}
	}
	if _, err := LoadPublicKeyPEM([]byte("garbage")); !errors.Is(err, ErrBadKey) {
		t.Errorf("garbage public key: %v", err)
	}
	if _, err := LoadCertificatePEM([]byte("garbage")); !errors.Is(err, ErrBadKey) {
		t.Errorf("garbage certificate: %v", err)
	}
	if _, err := LoadCertificatePEM(vec(t, "synthetic/v3_transaction_success_pubkey/pub_key.pem")); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "PUBLIC KEY") {
		t.Errorf("public key as certificate: %v", err)
	}
	// A 1024-bit key is refused.
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	if _, err := LoadPublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "1024") {
		t.Errorf("1024-bit key: %v", err)
	}
	// PKCS#1 "RSA PUBLIC KEY" works too.
	pub, _ := LoadPublicKeyPEM(vec(t, "synthetic/v3_transaction_success_pubkey/pub_key.pem"))
	if _, err := LoadPublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)})); err != nil {
		t.Errorf("PKCS#1: %v", err)
	}
	cert, _ := LoadCertificatePEM(vec(t, "synthetic/v3_transaction_success_cert/platform_cert.pem"))
	if s := CertificateSerial(cert); s != synthSerial {
		t.Errorf("serial %s", s)
	}
	wxgo, _ := LoadCertificatePEM(vec(t, "v3_wechatpay_go_notify/platform_cert.pem"))
	if s := CertificateSerial(wxgo); s != "D7CE59D1F522D701" {
		t.Errorf("serial %s", s)
	}
}

func TestCheckPlatformCertificate(t *testing.T) {
	// yansongda's signing certificate is a merchant API certificate
	// (CN 1600314068, O 微信商户系统).
	merchant, err := LoadCertificatePEM(vec(t, "v3_yansongda_callback/platform_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPlatformCertificate(merchant, "1600314068"); !errors.Is(err, ErrMerchantCertificate) {
		t.Errorf("own merchant certificate: %v", err)
	}
	if err := CheckPlatformCertificate(merchant, "1900000109"); !errors.Is(err, ErrMerchantCertificate) {
		t.Errorf("another merchant's certificate: %v", err)
	}
	test, _ := LoadCertificatePEM(vec(t, "synthetic/v3_transaction_success_cert/platform_cert.pem"))
	if err := CheckPlatformCertificate(test, "1900000109"); err != nil {
		t.Errorf("test platform certificate: %v", err)
	}
	// A self-made certificate whose CN is the mch_id.
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "1900000109"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	if err := CheckPlatformCertificate(c, "1900000109"); !errors.Is(err, ErrMerchantCertificate) {
		t.Errorf("CN = mch_id: %v", err)
	}
	if err := CheckPlatformCertificate(c, "1900000110"); err != nil {
		t.Errorf("CN = other: %v", err)
	}
}

func TestSignatureHeaders(t *testing.T) {
	x := loadV3(t, "synthetic/v3_transaction_success_cert")
	got := SignatureHeaders(x.h)
	if len(got) != 5 || got[HeaderSerial] != synthSerial || got[HeaderTimestamp] != "1735689600" || got["Content-Type"] != "" {
		t.Fatalf("%q", got)
	}
	// The kept headers are enough to verify again.
	h := http.Header{}
	for k, v := range got {
		h.Set(k, v)
	}
	if err := synthVerifier(t).Verify(h, x.body); err != nil {
		t.Fatal(err)
	}
	if SignatureHeaders(http.Header{"X": {"1"}}) != nil {
		t.Error("want nil without signature headers")
	}
}
