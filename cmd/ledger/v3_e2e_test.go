package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/merchant"
	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
)

// v3Setup starts a node on an injected clock with the given merchants, each
// signing on its own settable clock (initially the server's time).
func v3Setup(t *testing.T, ms ...*wxsim.Merchant) (*harness, *testClock, *testClock) {
	t.Helper()
	return v3SetupOn(t, harnessOptions{}, ms...)
}

// v3SetupOn is v3Setup on a harness built from o (its merchants and clock
// are replaced).
func v3SetupOn(t *testing.T, o harnessOptions, ms ...*wxsim.Merchant) (*harness, *testClock, *testClock) {
	t.Helper()
	t0 := time.Now().Truncate(time.Second)
	srv, sim := newClock(t0), newClock(t0)
	for _, m := range ms {
		m.Now = sim.Now
	}
	o.merchants, o.now = ms, srv.Now
	h := startHarness(t, o)
	return h, srv, sim
}

// TestV3PaymentExactlyOnce: a v3 TRANSACTION.SUCCESS refused once (its
// signature is stale) is retried by WeChat re-signed and acknowledged with
// 204; replays re-signed later, concurrent copies and the v2 copy of the
// same transaction are all acknowledged, and the payment is stored once.
func TestV3PaymentExactlyOnce(t *testing.T) {
	t.Parallel()
	testV3PaymentExactlyOnce(t, harnessOptions{})
}

// testV3PaymentExactlyOnce is the body of TestV3PaymentExactlyOnce, on a harness built
// from o (which picks the event store).
func testV3PaymentExactlyOnce(t *testing.T, o harnessOptions) {
	h, srv, sim := v3SetupOn(t, o, newMerchant(t))
	m := h.m
	t0 := srv.Now()
	h.placeOrder(m, "V3P001", 5000)
	p := wxsim.PayParams{OutTradeNo: "V3P001", TransactionID: "4200000000000000000000000301", TotalFee: 5000}

	sim.Set(t0.Add(-6 * time.Minute)) // the first attempt was signed long ago
	hdr, body := m.V3Pay(p)
	sim.Set(t0)
	res, err := h.deliver("/wechatpay/v3/notify", m.V3Request(hdr, body), 1)
	if err != nil || len(res.Attempts) != 2 {
		t.Fatalf("deliver: %v, attempts %+v", err, res.Attempts)
	}
	if o := res.Attempts[0].Copies[0]; o.Status != http.StatusUnauthorized {
		t.Fatalf("stale first attempt: want 401, got %d %s", o.Status, o.Body)
	}
	if o := res.Attempts[1].Copies[0]; o.Status != http.StatusNoContent || len(o.Body) != 0 {
		t.Fatalf("re-signed retry: want 204, got %d %s", o.Status, o.Body)
	}

	// WeChat's later retries, each re-signed at its own time.
	for i := range 8 {
		sim.Set(t0.Add(-4*time.Minute + time.Duration(i)*time.Minute))
		mustV3Success(t, fmt.Sprintf("replay %d", i), h.v3(m.SignV3(body), body))
	}
	sim.Set(t0)
	res, err = h.deliver("/wechatpay/v3/notify", m.V3Request(m.SignV3(body), body), 32)
	if err != nil || len(res.Attempts) != 1 {
		t.Fatalf("concurrent copies: %v", err)
	}
	for i, o := range res.Attempts[0].Copies {
		if o.Status != http.StatusNoContent {
			t.Fatalf("copy %d: %d %s %v", i, o.Status, o.Body, o.Err)
		}
	}
	// The same transaction notified through API v2 as well.
	mustV2Success(t, "v2 copy of the transaction", h.v2(m.V2Pay(p)))

	evs := h.events(m, "V3P001")
	if tx := paymentTx(t, evs); len(tx) != 1 || tx[0] != p.TransactionID || len(evs) != 2 {
		t.Fatalf("events %v, payments %v", types(evs), tx)
	}
	h.mustOrder(m, "V3P001", domain.StatusPaid, 5000, 0)
}

// TestV3Refusals: every v3 notification that cannot be verified is refused
// with a non-2xx JSON reply and writes nothing.
func TestV3Refusals(t *testing.T) {
	t.Parallel()
	testV3Refusals(t, harnessOptions{})
}

// testV3Refusals is the body of TestV3Refusals, on a harness built
// from o (which picks the event store).
func testV3Refusals(t *testing.T, o harnessOptions) {
	h, srv, sim := v3SetupOn(t, o, newMerchant(t), newMerchant(t))
	m, other := h.ms[0], h.ms[1]
	t0 := srv.Now()
	h.placeOrder(m, "V3R001", 800)
	p := wxsim.PayParams{OutTradeNo: "V3R001", TotalFee: 800}
	_, body := m.V3Pay(p)
	before := len(h.storeEvents())

	signedAt := func(at time.Time) http.Header {
		sim.Set(at)
		defer sim.Set(t0)
		return m.SignV3(body)
	}
	with := func(name, value string) http.Header {
		hd := m.SignV3(body)
		hd.Set(name, value)
		return hd
	}
	var reserialized []byte
	{
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		reserialized, _ = json.Marshal(v)
		if bytes.Equal(reserialized, body) {
			t.Fatal("re-serializing did not change the body; the case proves nothing")
		}
	}
	tampered := bytes.Replace(body, []byte(`"summary":"支付成功"`), []byte(`"summary":"支付成功 "`), 1)
	if bytes.Equal(tampered, body) {
		t.Fatalf("could not tamper with %s", body)
	}
	// A notification for another configured merchant, signed under m's
	// key serial: it verifies and decrypts, but the mchid is not m's.
	_, crossBody := m.V3Pay(wxsim.PayParams{OutTradeNo: "V3R001", TotalFee: 800, Extra: map[string]string{"mchid": other.MchID}})

	_, crossRefund := m.V3Refund(wxsim.RefundParams{OutTradeNo: "V3R001", TransactionID: "4200000000000000000000000309", OutRefundNo: "RX",
		TotalFee: 800, RefundFee: 800, Extra: map[string]string{"mchid": other.MchID}})
	otherEvent := m.V3Envelope("TRANSACTION.CLOSED", "关闭", "transaction", m.V3Transaction(p))
	huge := append(bytes.Repeat([]byte(" "), 2<<20), body...)
	cases := []struct {
		name   string
		header http.Header
		body   []byte
		status int
	}{
		{"timestamp 5 min old", signedAt(t0.Add(-5 * time.Minute)), body, http.StatusUnauthorized},
		{"timestamp 6 min old", signedAt(t0.Add(-6 * time.Minute)), body, http.StatusUnauthorized},
		{"timestamp 6 min ahead", signedAt(t0.Add(6 * time.Minute)), body, http.StatusUnauthorized},
		{"timestamp not a number", with(wechatpay.HeaderTimestamp, "yesterday"), body, http.StatusUnauthorized},
		{"unknown serial", with(wechatpay.HeaderSerial, "PUB_KEY_ID_0000000000000000000000000000"), body, http.StatusUnauthorized},
		{"no serial", with(wechatpay.HeaderSerial, ""), body, http.StatusUnauthorized},
		{"signature probe", with(wechatpay.HeaderSignature, wechatpay.SignatureProbePrefix+"AAAAbm90IGEgc2lnbmF0dXJl"), body, http.StatusUnauthorized},
		{"signature not base64", with(wechatpay.HeaderSignature, "%%%not*base64%%%"), body, http.StatusUnauthorized},
		{"no signature", with(wechatpay.HeaderSignature, ""), body, http.StatusUnauthorized},
		{"other signature type", with(wechatpay.HeaderSignatureType, "WECHATPAY2-SM2-WITH-SM3"), body, http.StatusUnauthorized},
		{"tampered body", m.SignV3(body), tampered, http.StatusUnauthorized},
		{"body re-serialized", m.SignV3(body), reserialized, http.StatusUnauthorized},
		{"mchid of another merchant", m.SignV3(crossBody), crossBody, http.StatusBadRequest},
		{"refund with the mchid of another merchant", m.SignV3(crossRefund), crossRefund, http.StatusBadRequest},
		{"unsupported event_type", m.SignV3(otherEvent), otherEvent, http.StatusBadRequest},
		{"2 MiB body", m.SignV3(huge), huge, http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		mustV3Refused(t, c.name, h.v3(c.header, c.body), c.status)
	}
	if after := len(h.storeEvents()); after != before {
		t.Fatalf("refused notifications wrote %d events", after-before)
	}
	h.mustOrder(m, "V3R001", domain.StatusPending, 0, 0)
	// Just inside the window both ways, the same body is fine.
	mustV3Success(t, "signed 4m59s ago", h.v3(signedAt(t0.Add(-5*time.Minute+time.Second)), body))
	mustV3Success(t, "signed 4m59s ahead", h.v3(signedAt(t0.Add(5*time.Minute-time.Second)), body))
	h.mustOrder(m, "V3R001", domain.StatusPaid, 800, 0)
	if n := countType(h.events(m, "V3R001"), domain.TypePaymentConfirmed); n != 1 {
		t.Fatalf("%d PaymentConfirmed", n)
	}
}

// TestV3Anomalies: v3 amount.total and appid are checked against the order.
func TestV3Anomalies(t *testing.T) {
	t.Parallel()
	testV3Anomalies(t, harnessOptions{})
}

// testV3Anomalies is the body of TestV3Anomalies, on a harness built
// from o (which picks the event store).
func testV3Anomalies(t *testing.T, o harnessOptions) {
	h, _, _ := v3SetupOn(t, o, newMerchant(t))
	m := h.m
	h.placeOrder(m, "V3A001", 5000)
	hd, body := m.V3Pay(wxsim.PayParams{OutTradeNo: "V3A001", TotalFee: 4999})
	mustV3Success(t, "amount mismatch", h.v3(hd, body))
	v := h.mustOrder(m, "V3A001", domain.StatusAmountMismatch, 0, 0)
	if !hasAnomaly(v, domain.AmountMismatch) {
		t.Fatalf("anomalies %+v", v.Anomalies)
	}

	h.placeOrder(m, "V3A002", 5000)
	hd, body = m.V3Pay(wxsim.PayParams{OutTradeNo: "V3A002", TotalFee: 5000, AppID: "wx0000000000000000"})
	mustV3Success(t, "appid mismatch", h.v3(hd, body))
	v = h.mustOrder(m, "V3A002", domain.StatusPending, 0, 0)
	if !hasAnomaly(v, domain.AppIDMismatch) {
		t.Fatalf("anomalies %+v", v.Anomalies)
	}
	for _, otn := range []string{"V3A001", "V3A002"} {
		if n := countType(h.events(m, otn), domain.TypePaymentConfirmed); n != 0 {
			t.Fatalf("%s: %d PaymentConfirmed", otn, n)
		}
	}
}

// TestV3PlatformCertificate: a merchant configured with a platform
// certificate (Wechatpay-Serial is the certificate's serial) and one with a
// WeChat Pay public key, side by side.
func TestV3PlatformCertificate(t *testing.T) {
	t.Parallel()
	certM, keyM := newMerchant(t), newMerchant(t)
	certM.UseCertificate = true
	h, _, _ := v3Setup(t, certM, keyM)
	for _, m := range []*wxsim.Merchant{certM, keyM} {
		otn := "PC" + m.MchID
		h.placeOrder(m, otn, 1234)
		hd, body := m.V3Pay(wxsim.PayParams{OutTradeNo: otn, TotalFee: 1234})
		if hd.Get(wechatpay.HeaderSerial) != m.SigningSerial() {
			t.Fatalf("serial %q", hd.Get(wechatpay.HeaderSerial))
		}
		mustV3Success(t, "serial "+m.SigningSerial(), h.v3(hd, body))
		mustV3Success(t, "again", h.v3(m.SignV3(body), body))
		h.with(t).mustOrder(m, otn, domain.StatusPaid, 1234, 0)
	}
	if certM.SigningSerial() != certM.CertSerial || keyM.SigningSerial() != keyM.PublicKeyID {
		t.Fatalf("serials %q %q", certM.SigningSerial(), keyM.SigningSerial())
	}
}

// TestRefunds: v3 and v2 refunds, partial, several, full; repeats counted
// once; a damaged req_info refused; refunds before their payment; a late
// payment copy after a full refund.
func TestRefunds(t *testing.T) {
	t.Parallel()
	testRefunds(t, harnessOptions{})
}

// testRefunds is the body of TestRefunds, on a harness built
// from o (which picks the event store).
func testRefunds(t *testing.T, o harnessOptions) {
	h, _, _ := v3SetupOn(t, o, newMerchant(t))
	m := h.m
	const tx = "4200000000000000000000000401"
	h.placeOrder(m, "RFD001", 10000)
	payHdr, payBody := m.V3Pay(wxsim.PayParams{OutTradeNo: "RFD001", TransactionID: tx, TotalFee: 10000})
	mustV3Success(t, "payment", h.v3(payHdr, payBody))

	refund := func(id string, fee int64) wxsim.RefundParams {
		return wxsim.RefundParams{OutTradeNo: "RFD001", TransactionID: tx, RefundID: id, OutRefundNo: "R" + id, TotalFee: 10000, RefundFee: fee}
	}
	// v3 partial refund: 3 in a row, then 8 concurrent copies.
	hd, body := m.V3Refund(refund("5000000000000000000000000000001", 3000))
	for i := range 3 {
		mustV3Success(t, fmt.Sprintf("v3 refund copy %d", i), h.v3(m.SignV3(body), body))
	}
	if res, err := h.deliver("/wechatpay/v3/notify", m.V3Request(hd, body), 8); err != nil || len(res.Attempts) != 1 {
		t.Fatalf("v3 refund copies: %v", err)
	}
	h.mustOrder(m, "RFD001", domain.StatusPartiallyRefunded, 10000, 3000)

	// v2 refund of 2000: repeated, and a closed refund that returns nothing.
	v2body := m.V2Refund(refund("5000000000000000000000000000002", 2000))
	for i := range 3 {
		mustV2Success(t, fmt.Sprintf("v2 refund copy %d", i), h.v2Refund(v2body))
	}
	closed := refund("5000000000000000000000000000009", 1000)
	closed.Status = domain.RefundStatusClosed
	mustV2Success(t, "closed refund", h.v2Refund(m.V2Refund(closed)))
	h.mustOrder(m, "RFD001", domain.StatusPartiallyRefunded, 10000, 5000)

	// A damaged req_info cannot be decrypted: refused, nothing changes.
	before := len(h.events(m, "RFD001"))
	f, err := wechatpay.ParseV2(m.V2Refund(refund("5000000000000000000000000000003", 5000)))
	if err != nil {
		t.Fatal(err)
	}
	ri := []byte(f["req_info"])
	ri[10] ^= 0x01 // still base64, another ciphertext block
	f["req_info"] = string(ri)
	damaged, err := wechatpay.EncodeV2(f)
	if err != nil {
		t.Fatal(err)
	}
	mustV2Fail(t, "damaged req_info", h.v2Refund(damaged), http.StatusUnauthorized)
	f["req_info"] = "not base64 at all!"
	damaged, _ = wechatpay.EncodeV2(f)
	mustV2Fail(t, "req_info not base64", h.v2Refund(damaged), 0)
	if after := len(h.events(m, "RFD001")); after != before {
		t.Fatalf("damaged refunds wrote %d events", after-before)
	}
	h.mustOrder(m, "RFD001", domain.StatusPartiallyRefunded, 10000, 5000)

	// The rest, through v3: REFUNDED.
	_, body = m.V3Refund(refund("5000000000000000000000000000004", 5000))
	mustV3Success(t, "final refund", h.v3(m.SignV3(body), body))
	mustV3Success(t, "final refund again", h.v3(m.SignV3(body), body))
	h.mustOrder(m, "RFD001", domain.StatusRefunded, 10000, 10000)

	// A late copy of the payment, both channels: still REFUNDED, one payment.
	mustV3Success(t, "late v3 payment copy", h.v3(m.SignV3(payBody), payBody))
	mustV2Success(t, "late v2 payment copy", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "RFD001", TransactionID: tx, TotalFee: 10000})))
	h.mustOrder(m, "RFD001", domain.StatusRefunded, 10000, 10000)
	evs := h.events(m, "RFD001")
	if countType(evs, domain.TypePaymentConfirmed) != 1 || countType(evs, domain.TypeRefundSucceeded) != 3 ||
		countType(evs, domain.TypeRefundClosed) != 1 || countType(evs, domain.TypeAnomalyDetected) != 0 {
		t.Fatalf("events %v", types(evs))
	}

	// Refunds before their payment (its notice came late).
	h.placeOrder(m, "RFD002", 1000)
	early := wxsim.RefundParams{OutTradeNo: "RFD002", TransactionID: "4200000000000000000000000402", OutRefundNo: "RR2", TotalFee: 1000, RefundFee: 300}
	mustV2Success(t, "v2 refund before payment", h.v2Refund(m.V2Refund(early)))
	// Recorded and counted (by design, domain.Order.refundOfOrder): the
	// order is not paid yet, so the refund's money is the order's.
	h.mustOrder(m, "RFD002", domain.StatusPending, 0, 300)
	mustV2Success(t, "payment after refund", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "RFD002", TransactionID: early.TransactionID, TotalFee: 1000})))
	h.mustOrder(m, "RFD002", domain.StatusPartiallyRefunded, 1000, 300)

	h.placeOrder(m, "RFD003", 700)
	full := wxsim.RefundParams{OutTradeNo: "RFD003", TransactionID: "4200000000000000000000000403", OutRefundNo: "RR3", TotalFee: 700, RefundFee: 700}
	hd, body = m.V3Refund(full)
	mustV3Success(t, "v3 full refund before payment", h.v3(hd, body))
	hd, body = m.V3Pay(wxsim.PayParams{OutTradeNo: "RFD003", TransactionID: full.TransactionID, TotalFee: 700})
	mustV3Success(t, "payment after full refund", h.v3(hd, body))
	mustV3Success(t, "payment after full refund, again", h.v3(m.SignV3(body), body))
	v := h.mustOrder(m, "RFD003", domain.StatusRefunded, 700, 700)
	if len(v.Anomalies) != 0 {
		t.Fatalf("anomalies %+v", v.Anomalies)
	}
}

// TestStartupConfigValidation: bad v3 keys stop the node at start-up
// instead of failing every notification later, both through startNode and
// through `ledger serve`; the messages never show a secret.
func TestStartupConfigValidation(t *testing.T) {
	t.Parallel()
	m := newMerchant(t)
	ownCert := merchantCertPEM(t, m)

	t.Run("startNode", func(t *testing.T) {
		base := func() *merchant.Merchant {
			return &merchant.Merchant{
				MchID: m.MchID, AppID: m.AppID, AppIDs: []string{m.AppID},
				APIKey: merchant.NewSecret(m.APIKey), APIv3Key: merchant.NewSecret(m.APIv3Key),
				PublicKeys: map[string][]byte{m.PublicKeyID: m.PublicKeyPEM()},
			}
		}
		short := base()
		short.APIv3Key = merchant.NewSecret(m.APIv3Key[:31])
		garbage := base()
		garbage.PublicKeys[m.PublicKeyID] = []byte("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")
		own := base()
		own.Certificates = [][]byte{ownCert}
		for name, c := range map[string]struct {
			m    *merchant.Merchant
			want string
		}{
			"apiv3 key of 31 bytes":      {short, "apiv3_key"},
			"unreadable public key":      {garbage, "wechatpay_public_key"},
			"merchant's own certificate": {own, "platform_certificates"},
		} {
			n, err := startNode(context.Background(), nodeConfig{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Merchants: merchant.NewRegistry(c.m)})
			if err == nil {
				n.Close(context.Background())
				t.Errorf("%s: startNode succeeded", name)
				continue
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), m.APIv3Key[:31]) {
				t.Errorf("%s: error %q should name %s and no secret", name, err, c.want)
			}
		}
		// The good configuration starts.
		n, err := startNode(context.Background(), nodeConfig{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Merchants: merchant.NewRegistry(base())})
		if err != nil {
			t.Fatal(err)
		}
		n.Close(context.Background())
	})

	t.Run("serve", func(t *testing.T) {
		cases := []struct {
			name string
			edit func(dir string, e map[string]any)
			want string
		}{
			{"apiv3 key of 20 bytes", func(dir string, e map[string]any) { e["apiv3_key"] = m.APIv3Key[:20] }, "apiv3_key"},
			{"missing public key file", func(dir string, e map[string]any) { e["wechatpay_public_key"] = "nope.pem" }, "wechatpay_public_key"},
			{"public key file is not a key", func(dir string, e map[string]any) {
				writeFile(t, filepath.Join(dir, "bad.pem"), []byte("not a pem file"))
				e["wechatpay_public_key"] = "bad.pem"
			}, "wechatpay_public_key"},
			{"merchant's own certificate", func(dir string, e map[string]any) {
				writeFile(t, filepath.Join(dir, "own.pem"), ownCert)
				e["platform_certificates"] = []string{"own.pem"}
			}, "platform_certificates"},
		}
		for _, c := range cases {
			cfg := editedConfig(t, m, c.edit)
			ctx, cancel := context.WithCancel(context.Background())
			stdout, stderr := newLineWatcher(), &syncBuffer{}
			done := make(chan int, 1)
			go func() {
				done <- Main(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--merchants", cfg}, stdout, stderr, func(string) string { return "" })
			}()
			select {
			case code := <-done:
				if code != 1 || !strings.Contains(stderr.String(), c.want) {
					t.Errorf("%s: exit %d, stderr %q; want 1 naming %s", c.name, code, stderr, c.want)
				}
				for _, secret := range []string{m.APIKey, m.APIv3Key, m.APIv3Key[:20]} {
					if strings.Contains(stderr.String()+stdout.String(), secret) {
						t.Errorf("%s: output shows a secret: %s", c.name, stderr)
					}
				}
			case u := <-stdout.url:
				cancel()
				<-done
				t.Errorf("%s: serve started on %s", c.name, u)
			case <-time.After(60 * time.Second):
				t.Fatalf("%s: serve neither failed nor started", c.name)
			}
			cancel()
		}
	})
}

// editedConfig writes m's merchants.json, changed by edit, and returns its path.
func editedConfig(t *testing.T, m *wxsim.Merchant, edit func(dir string, e map[string]any)) string {
	t.Helper()
	dir := t.TempDir()
	path, err := wxsim.WriteConfig(dir, m)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var entries []map[string]any
	if err := json.Unmarshal(raw, &entries); err != nil {
		t.Fatal(err)
	}
	edit(dir, entries[0])
	raw, _ = json.Marshal(entries)
	writeFile(t, path, raw)
	return path
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// merchantCertPEM makes a certificate shaped like a merchant API
// certificate (CN the mch_id, O 微信商户系统): what people mistakenly
// configure as the platform certificate.
func merchantCertPEM(t *testing.T, m *wxsim.Merchant) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x5a5a5a5a5a),
		Subject:      pkix.Name{CommonName: m.MchID, Organization: []string{"微信商户系统"}, OrganizationalUnit: []string{"财付通支付科技有限公司"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &m.PrivateKey.PublicKey, m.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
