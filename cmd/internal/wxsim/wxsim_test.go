package wxsim

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/domain"
)

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

// sandbox returns a merchant on a shared RSA key (key generation is slow
// under -race) with a fixed clock.
func sandbox(t testing.TB) *Merchant {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if testKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	m, err := NewSandboxWithKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 9, 41, 52, 0, domain.Beijing)
	m.Now = func() time.Time { return now }
	return m
}

func TestNewSandbox(t *testing.T) {
	m, err := NewSandbox()
	if err != nil {
		t.Fatal(err)
	}
	if err := wechatpay.CheckAPIKey(m.APIKey); err != nil {
		t.Error(err)
	}
	if err := wechatpay.CheckAPIv3Key(m.APIv3Key); err != nil {
		t.Error(err)
	}
	if len(m.MchID) != 10 || !strings.HasPrefix(m.AppID, "wx") || len(m.AppID) != 18 {
		t.Errorf("ids %q %q", m.MchID, m.AppID)
	}
	if !strings.HasPrefix(m.PublicKeyID, wechatpay.PublicKeyIDPrefix) {
		t.Errorf("PublicKeyID %q", m.PublicKeyID)
	}
	if len(m.CertSerial) != 40 || strings.ToUpper(m.CertSerial) != m.CertSerial {
		t.Errorf("CertSerial %q", m.CertSerial)
	}
	if err := wechatpay.CheckPlatformCertificate(m.Certificate, m.MchID); err != nil {
		t.Errorf("sim certificate looks like a merchant certificate: %v", err)
	}
	if _, err := wechatpay.LoadPublicKeyPEM(m.PublicKeyPEM()); err != nil {
		t.Error(err)
	}
	if _, err := wechatpay.LoadCertificatePEM(m.CertificatePEM()); err != nil {
		t.Error(err)
	}
	m2, _ := NewSandboxWithKey(m.PrivateKey)
	if m2.APIKey == m.APIKey || m2.MchID == m.MchID || m2.CertSerial == m.CertSerial {
		t.Error("two sandboxes share credentials")
	}
}

func TestV2PayVerifiesAndDecodes(t *testing.T) {
	m := sandbox(t)
	for _, signType := range []string{"", "MD5", "HMAC-SHA256"} {
		body := m.V2Pay(PayParams{
			OutTradeNo: "20261130508001", TotalFee: 2990, CouponFee: 100, Attach: "支付测试 <&>",
			Coupons:  []Coupon{{Type: "CASH", ID: "10000", Fee: 100}},
			SignType: signType, Extra: map[string]string{"some_future_field": "x"},
		})
		f, err := wechatpay.ParseV2(body)
		if err != nil {
			t.Fatalf("%s: %v\n%s", signType, err, body)
		}
		if err := wechatpay.VerifyV2(f, m.APIKey); err != nil {
			t.Fatalf("%s: %v", signType, err)
		}
		n, err := wechatpay.DecodeV2Pay(f)
		if err != nil {
			t.Fatal(err)
		}
		p := n.Payment(domain.Evidence{})
		if p.MchID != m.MchID || p.AppID != m.AppID || p.TotalFee != 2990 || p.CashFee != 2890 || p.CouponFee != 100 ||
			p.ResultCode != "SUCCESS" || p.Attach != "支付测试 <&>" || !p.PaidAt.Equal(m.now()) || !strings.HasPrefix(p.TransactionID, "4200") {
			t.Errorf("%s: %+v", signType, p)
		}
		if f["coupon_id_0"] != "10000" || f["coupon_count"] != "1" {
			t.Errorf("coupon fields %q", f)
		}
		s := string(body)
		if !strings.Contains(s, "<total_fee>2990</total_fee>") || !strings.Contains(s, "<out_trade_no>20261130508001</out_trade_no>") ||
			!strings.Contains(s, "<trade_type><![CDATA[JSAPI]]></trade_type>") {
			t.Errorf("not WeChat style: %s", s)
		}
		if (signType == "") == strings.Contains(s, "sign_type") {
			t.Errorf("sign_type %q: %s", signType, s)
		}
	}
	// A wrong key fails.
	if err := wechatpay.VerifyV2(m.V2PayFields(PayParams{OutTradeNo: "o", TotalFee: 1}), strings.Repeat("x", 32)); !errors.Is(err, wechatpay.ErrBadSignature) {
		t.Errorf("wrong key: %v", err)
	}
}

func TestV2PayVariants(t *testing.T) {
	m := sandbox(t)
	f, _ := wechatpay.ParseV2(m.V2Pay(PayParams{OutTradeNo: "o", TotalFee: 100, ResultCode: "FAIL", ErrCode: "SYSTEMERROR", ErrCodeDes: "系统错误", AppID: "wxother", CashFee: Fen(0)}))
	if err := wechatpay.VerifyV2(f, m.APIKey); err != nil {
		t.Fatal(err)
	}
	n, err := wechatpay.DecodeV2Pay(f)
	if err != nil || n.ResultCode != "FAIL" || n.ErrCode != "SYSTEMERROR" || n.AppID != "wxother" || n.CashFee != 0 {
		t.Errorf("%+v, %v", n, err)
	}
	f, _ = wechatpay.ParseV2(m.V2PayTampered(PayParams{OutTradeNo: "o", TotalFee: 100}, "total_fee", "1"))
	if err := wechatpay.VerifyV2(f, m.APIKey); !errors.Is(err, wechatpay.ErrBadSignature) {
		t.Errorf("tampered: %v", err)
	}
	f, _ = wechatpay.ParseV2(m.V2Pay(PayParams{OutTradeNo: "o", TotalFee: 100, SignType: "SHA1"}))
	if err := wechatpay.VerifyV2(f, m.APIKey); !errors.Is(err, wechatpay.ErrUnsupportedSignType) {
		t.Errorf("SHA1: %v", err)
	}
}

func TestV2RefundDecrypts(t *testing.T) {
	m := sandbox(t)
	for status, want := range map[string]string{"": "SUCCESS", "SUCCESS": "SUCCESS", "CLOSED": "REFUNDCLOSE", "ABNORMAL": "CHANGE"} {
		body := m.V2Refund(RefundParams{OutTradeNo: "o1", TransactionID: "4200000001", OutRefundNo: "R1", TotalFee: 100, RefundFee: 40, Status: status})
		n, err := wechatpay.ParseV2RefundNotify(body)
		if err != nil {
			t.Fatal(err)
		}
		if n.MchID != m.MchID || n.AppID != m.AppID || n.Raw["sign"] != "" {
			t.Errorf("outer %+v", n)
		}
		f, err := wechatpay.DecryptV2RefundReqInfo(n.ReqInfo, m.APIKey)
		if err != nil {
			t.Fatal(err)
		}
		if f["refund_status"] != want {
			t.Errorf("status %q: %q", status, f["refund_status"])
		}
		r, err := wechatpay.DecodeV2Refund(f)
		if err != nil {
			t.Fatal(err)
		}
		d := r.Refund(n.MchID, domain.Evidence{})
		wantDomain := status
		if wantDomain == "" {
			wantDomain = domain.RefundStatusSuccess
		}
		if d.Status != wantDomain || d.RefundFee != 40 || d.TotalFee != 100 || d.OutRefundNo != "R1" || d.MchID != m.MchID {
			t.Errorf("%+v", d)
		}
		if _, err := wechatpay.DecryptV2RefundReqInfo(n.ReqInfo, strings.Repeat("y", 32)); !errors.Is(err, wechatpay.ErrUndecryptable) {
			t.Errorf("wrong key: %v", err)
		}
	}
}

// readConfig loads the verifier for m the way the server would: from the
// written merchants file and the PEM path relative to it.
func readConfig(t *testing.T, path string) []ConfigEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var entries []ConfigEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestV3PayVerifiesAndDecrypts(t *testing.T) {
	m := sandbox(t)
	m2 := sandbox(t)
	path, err := WriteConfig(filepath.Join(t.TempDir(), "cfg"), m, m2)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	for _, k := range []string{`"mch_id"`, `"appid"`, `"api_key"`, `"apiv3_key"`, `"wechatpay_public_key_id"`, `"wechatpay_public_key"`} {
		if !bytes.Contains(raw, []byte(k)) {
			t.Errorf("config lacks %s:\n%s", k, raw)
		}
	}
	if bytes.Contains(raw, []byte("platform_certificates")) {
		t.Errorf("public-key merchants got certificates:\n%s", raw)
	}
	entries := readConfig(t, path)
	if len(entries) != 2 || entries[0].MchID != m.MchID || entries[0].APIKey != m.APIKey || entries[0].APIv3Key != m.APIv3Key || entries[0].WeChatPayPubKeyID != m.PublicKeyID {
		t.Fatalf("entries %+v", entries)
	}
	pemData, err := os.ReadFile(filepath.Join(filepath.Dir(path), entries[0].WeChatPayPublicKey))
	if err != nil {
		t.Fatal(err)
	}
	v := wechatpay.NewV3Verifier()
	v.Now = m.Now
	if err := v.AddPublicKeyPEM(entries[0].WeChatPayPubKeyID, pemData); err != nil {
		t.Fatal(err)
	}

	h, body := m.V3Pay(PayParams{OutTradeNo: "20261130877014", TotalFee: 1880, CashFee: Fen(1800), Attach: "a"})
	if err := v.Verify(h, body); err != nil {
		t.Fatal(err)
	}
	env, err := wechatpay.ParseV3Envelope(body)
	if err != nil {
		t.Fatal(err)
	}
	if env.EventType != "TRANSACTION.SUCCESS" || env.Resource.AssociatedData != "transaction" || h.Get(wechatpay.HeaderSerial) != m.PublicKeyID {
		t.Errorf("envelope %+v, serial %s", env, h.Get(wechatpay.HeaderSerial))
	}
	plain, err := wechatpay.DecryptV3Resource(env, []byte(entries[0].APIv3Key))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := wechatpay.DecodeV3Transaction(plain)
	if err != nil {
		t.Fatal(err)
	}
	p := tx.Payment(domain.Evidence{})
	if p.MchID != m.MchID || p.TotalFee != 1880 || p.CashFee != 1800 || p.CouponFee != 80 || p.ResultCode != "SUCCESS" || !p.PaidAt.Equal(m.now()) || p.Attach != "a" {
		t.Errorf("%+v", p)
	}
	// Tampered body, stale clock, other merchant's key: refused.
	if err := v.Verify(h, bytes.Replace(body, []byte("TRANSACTION"), []byte("TRANSACTIOn"), 1)); !errors.Is(err, wechatpay.ErrBadSignature) {
		t.Errorf("tampered: %v", err)
	}
	v.Now = func() time.Time { return m.now().Add(10 * time.Minute) }
	if err := v.Verify(h, body); !errors.Is(err, wechatpay.ErrStaleTimestamp) {
		t.Errorf("stale: %v", err)
	}
	h2, body2 := m2.V3Pay(PayParams{OutTradeNo: "o", TotalFee: 1})
	v.Now = m.Now
	if err := v.Verify(h2, body2); !errors.Is(err, wechatpay.ErrUnknownSerial) {
		t.Errorf("other merchant: %v", err)
	}
}

func TestV3CertificateModeAndRefund(t *testing.T) {
	m := sandbox(t)
	m.UseCertificate = true
	path, err := WriteConfig(t.TempDir(), m)
	if err != nil {
		t.Fatal(err)
	}
	entries := readConfig(t, path)
	if len(entries[0].PlatformCertificates) != 1 {
		t.Fatalf("%+v", entries[0])
	}
	certPEM, err := os.ReadFile(filepath.Join(filepath.Dir(path), entries[0].PlatformCertificates[0]))
	if err != nil {
		t.Fatal(err)
	}
	v := wechatpay.NewV3Verifier()
	v.Now = m.Now
	if err := v.AddCertificatePEM(certPEM); err != nil {
		t.Fatal(err)
	}
	h, body := m.V3Refund(RefundParams{OutTradeNo: "o1", TransactionID: "4200000001", OutRefundNo: "R1", TotalFee: 100, RefundFee: 50, PayerRefund: Fen(45)})
	if h.Get(wechatpay.HeaderSerial) != m.CertSerial {
		t.Errorf("serial %s", h.Get(wechatpay.HeaderSerial))
	}
	if err := v.Verify(h, body); err != nil {
		t.Fatal(err)
	}
	env, err := wechatpay.ParseV3Envelope(body)
	if err != nil {
		t.Fatal(err)
	}
	if env.EventType != "REFUND.SUCCESS" || env.Resource.OriginalType != "refund" {
		t.Errorf("%+v", env)
	}
	plain, err := wechatpay.DecryptV3Resource(env, []byte(m.APIv3Key))
	if err != nil {
		t.Fatal(err)
	}
	r, err := wechatpay.DecodeV3Refund(plain)
	if err != nil {
		t.Fatal(err)
	}
	d := r.Refund(domain.Evidence{})
	if d.Status != domain.RefundStatusSuccess || d.RefundFee != 50 || d.PayerRefund != 45 || d.PayerTotal != 100 || d.MchID != m.MchID || !d.SucceededAt.Equal(m.now()) {
		t.Errorf("%+v", d)
	}
	for _, st := range []string{domain.RefundStatusClosed, domain.RefundStatusAbnormal} {
		h, body := m.V3Refund(RefundParams{OutTradeNo: "o1", TransactionID: "t", OutRefundNo: "R2", TotalFee: 100, RefundFee: 50, Status: st})
		env, _ := wechatpay.ParseV3Envelope(body)
		plain, _ := wechatpay.DecryptV3Resource(env, []byte(m.APIv3Key))
		r, err := wechatpay.DecodeV3Refund(plain)
		if err != nil || v.Verify(h, body) != nil || env.EventType != "REFUND."+st || r.RefundStatus != st || !r.SuccessTime.IsZero() {
			t.Errorf("%s: %+v %v", st, r, err)
		}
	}
}

func TestIsV2Success(t *testing.T) {
	ok := wechatpay.V2Success()
	tests := []struct {
		name   string
		status int
		body   string
		want   bool
	}{
		{"exact", 200, string(ok), true},
		{"plain_text_values", 200, `<xml><return_code>SUCCESS</return_code><return_msg>OK</return_msg></xml>`, true},
		{"no_return_msg", 200, `<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>`, true},
		{"whitespace_between_elements", 200, "<xml>\n<return_code>SUCCESS</return_code>\n</xml>\n", true},
		{"status_201", 201, string(ok), false},
		{"status_204", 204, "", false},
		{"status_500", 500, string(ok), false},
		{"empty_200", 200, "", false},
		{"fail", 200, string(wechatpay.V2Fail("busy")), false},
		{"plain_SUCCESS", 200, "SUCCESS", false},
		{"json", 200, `{"return_code":"SUCCESS"}`, false},
		{"lower_case", 200, `<xml><return_code>success</return_code></xml>`, false},
		{"padded_value", 200, `<xml><return_code> SUCCESS </return_code></xml>`, false},
		{"duplicate", 200, `<xml><return_code>SUCCESS</return_code><return_code>FAIL</return_code></xml>`, false},
		{"written_twice", 200, string(ok) + string(ok), false},
		{"truncated", 200, string(ok[:len(ok)-3]), false},
	}
	for _, tt := range tests {
		if got := IsV2Success(tt.status, http.Header{}, []byte(tt.body)); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	for status, want := range map[int]bool{200: true, 204: true, 201: false, 202: false, 400: false, 500: false} {
		if IsV3Success(status) != want {
			t.Errorf("IsV3Success(%d) != %v", status, want)
		}
	}
}

// Resign must be honoured: WeChat re-signs v3 retries.
func TestV3RequestResigns(t *testing.T) {
	m := sandbox(t)
	var mu sync.Mutex
	clock := m.now()
	m.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	h, body := m.V3Pay(PayParams{OutTradeNo: "o", TotalFee: 1})
	req := m.V3Request(h, body)
	mu.Lock()
	clock = clock.Add(time.Hour)
	mu.Unlock()
	h2 := req.Resign()
	if h2.Get(wechatpay.HeaderTimestamp) == h.Get(wechatpay.HeaderTimestamp) {
		t.Fatal("resigned headers keep the old timestamp")
	}
	v, _ := m.Verifier()
	if err := v.Verify(h2, body); err != nil {
		t.Fatal(err)
	}
}
