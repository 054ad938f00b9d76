package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
)

// TestEvidenceReverifiable: an auditor reading a payment or refund event
// later can verify the notification's signature again from what the event
// kept (the exact body, and for v3 the signature headers), with nothing but
// the merchant's keys; and the stored evidence holds no decrypted plaintext.
func TestEvidenceReverifiable(t *testing.T) {
	t.Parallel()
	m := newMerchant(t)
	h, _, sim := v3Setup(t, m)
	signedAt := sim.Now()

	// v2 payment, v3 payment, v2 refund of the v3 payment.
	h.placeOrder(m, "EVID-V2", 1234)
	mustV2Success(t, "v2 pay", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "EVID-V2", TransactionID: "4200000000000000000000000101", TotalFee: 1234, Attach: "审计 & check"})))
	h.placeOrder(m, "EVID-V3", 5000)
	hdr, body := m.V3Pay(wxsim.PayParams{OutTradeNo: "EVID-V3", TransactionID: "4200000000000000000000000102", TotalFee: 5000, Attach: "PLAINTEXT-MARKER-V3"})
	mustV3Success(t, "v3 pay", h.v3(hdr, body))
	rf := m.V2Refund(wxsim.RefundParams{OutTradeNo: "EVID-V3", TransactionID: "4200000000000000000000000102",
		OutRefundNo: "R-EVID-V3", TotalFee: 5000, RefundFee: 1000, Extra: map[string]string{"refund_recv_accout": "PLAINTEXT-MARKER-REFUND"}})
	mustV2Success(t, "v2 refund", h.v2Refund(rf))

	evidenceOf := func(otn, typ string) domain.Evidence {
		t.Helper()
		for _, e := range h.events(m, otn) {
			if e.Type != typ {
				continue
			}
			var v struct {
				Evidence domain.Evidence `json:"evidence"`
			}
			if err := json.Unmarshal(e.Data, &v); err != nil {
				t.Fatalf("%s %s: %v", otn, typ, err)
			}
			return v.Evidence
		}
		t.Fatalf("%s: no %s event", otn, typ)
		return domain.Evidence{}
	}

	// v2: the stored body parses and its sign verifies with the API key.
	ev := evidenceOf("EVID-V2", domain.TypePaymentConfirmed)
	if ev.Channel != "wechatpay-v2-notify" || ev.ReceivedAt.IsZero() {
		t.Fatalf("v2 evidence: %+v", ev)
	}
	fields, err := wechatpay.ParseV2([]byte(ev.Body))
	if err != nil {
		t.Fatalf("stored v2 body does not parse: %v", err)
	}
	if err := wechatpay.VerifyV2(fields, m.APIKey); err != nil {
		t.Fatalf("stored v2 body does not verify: %v", err)
	}
	if fields["attach"] != "审计 & check" {
		t.Fatalf("stored v2 body altered: attach %q", fields["attach"])
	}

	// v3: the stored body and headers verify with WeChat Pay's public key at
	// the time it was signed; the stored body is still the encrypted envelope.
	ev = evidenceOf("EVID-V3", domain.TypePaymentConfirmed)
	if ev.Channel != "wechatpay-v3-notify" || ev.Headers[wechatpay.HeaderSerial] == "" {
		t.Fatalf("v3 evidence: %+v", ev)
	}
	v, err := m.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return signedAt }
	header := http.Header{}
	for k, val := range ev.Headers {
		header.Set(k, val)
	}
	if err := v.Verify(header, []byte(ev.Body)); err != nil {
		t.Fatalf("stored v3 notification does not verify: %v", err)
	}
	if ev.Body != string(body) {
		t.Fatal("stored v3 body differs from the bytes received")
	}

	// v2 refund: the stored outer XML still decrypts with the API key.
	ev = evidenceOf("EVID-V3", domain.TypeRefundSucceeded)
	outer, err := wechatpay.ParseV2([]byte(ev.Body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wechatpay.DecryptV2RefundReqInfo(outer["req_info"], m.APIKey); err != nil {
		t.Fatalf("stored req_info does not decrypt: %v", err)
	}

	// No decrypted plaintext in any stored evidence.
	for _, otn := range []string{"EVID-V2", "EVID-V3"} {
		for _, e := range h.events(m, otn) {
			var v struct {
				Evidence domain.Evidence `json:"evidence"`
			}
			_ = json.Unmarshal(e.Data, &v)
			for _, marker := range []string{"PLAINTEXT-MARKER-V3", "PLAINTEXT-MARKER-REFUND"} {
				if strings.Contains(v.Evidence.Body, marker) {
					t.Fatalf("%s %s: evidence holds decrypted plaintext %q", otn, e.Type, marker)
				}
			}
		}
	}
}
