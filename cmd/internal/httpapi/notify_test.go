package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/app"
	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/projections"
)

// TestV2PaySuccessReply: after the durable append, and for every repeat,
// the reply is 200 with exactly WeChat's SUCCESS body as text/xml.
func TestV2PaySuccessReply(t *testing.T) {
	h := newHarness(t)
	h.placeOrder("V2OK", 100)
	body := h.m.V2Pay(wxsim.PayParams{OutTradeNo: "V2OK", TotalFee: 100, TransactionID: "4200000000000000000000000001"})
	for i, what := range []string{"first delivery", "WeChat's retry"} {
		r := h.v2(body)
		if r.status != http.StatusOK || r.body != v2SuccessBody {
			t.Fatalf("%s: %d %q, want 200 and exactly %q", what, r.status, r.body, v2SuccessBody)
		}
		if ct := r.header.Get("Content-Type"); ct != "text/xml; charset=utf-8" {
			t.Errorf("%s: Content-Type %q, want text/xml; charset=utf-8", what, ct)
		}
		if n := countType(h.events("V2OK"), domain.TypePaymentConfirmed); n != 1 {
			t.Fatalf("%s: %d PaymentConfirmed stored, want 1", what, n)
		}
		outcome := []string{"recorded", "duplicate"}[i]
		if got := h.srv.Metrics().Get("v2-pay", outcome); got != 1 {
			t.Errorf("%s: metric %s = %d, want 1", what, outcome, got)
		}
	}
	// HMAC-SHA256 signed notifications are verified with their own sign_type.
	h.placeOrder("V2HMAC", 100)
	r := h.v2(h.m.V2Pay(wxsim.PayParams{OutTradeNo: "V2HMAC", TotalFee: 100, SignType: wechatpay.SignTypeHMACSHA256}))
	if r.status != http.StatusOK || r.body != v2SuccessBody {
		t.Errorf("HMAC-SHA256: %d %q, want 200 SUCCESS", r.status, r.body)
	}
	// The read API sees the payment (the handler waited for the projection).
	r = h.do(http.MethodGet, "/v1/merchants/"+h.m.MchID+"/orders/V2OK", nil, nil)
	var v projections.OrderView
	if err := json.Unmarshal([]byte(r.body), &v); err != nil || r.status != http.StatusOK || v.Status != domain.StatusPaid {
		t.Errorf("GET order: %d %s (err %v), want 200 PAID", r.status, r.body, err)
	}
}

// TestV2PayFailureReplies: every refusal is a FAIL body with a non-2xx
// status (so WeChat delivers again) and stores nothing. Store failures are
// 5xx: the outcome is unknown or the write did not happen, and the retry
// is safe.
func TestV2PayFailureReplies(t *testing.T) {
	h := newHarness(t)
	stranger := newSandbox(t) // a merchant this ledger does not serve
	pay := func(otn string) wxsim.PayParams {
		return wxsim.PayParams{OutTradeNo: otn, TotalFee: 100}
	}
	unsigned := func(otn string) []byte {
		f := h.m.V2PayFields(pay(otn))
		delete(f, "sign")
		b, err := wechatpay.EncodeV2(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	storeErr := func(err error) func() { return func() { h.fake.failWith(err) } }
	for _, tc := range []struct {
		name   string
		body   func(otn string) []byte
		setup  func()
		status int
	}{
		{name: "tampered total_fee", status: http.StatusUnauthorized,
			body: func(otn string) []byte { return h.m.V2PayTampered(pay(otn), "total_fee", "1") }},
		{name: "no sign", status: http.StatusUnauthorized, body: unsigned},
		{name: "signed with another key", status: http.StatusUnauthorized,
			body: func(otn string) []byte {
				other := *h.m
				other.APIKey = strings.Repeat("k", 32)
				return other.V2Pay(pay(otn))
			}},
		{name: "unsupported sign_type", status: http.StatusUnauthorized,
			body: func(otn string) []byte { p := pay(otn); p.SignType = "SHA1"; return h.m.V2Pay(p) }},
		{name: "malformed XML", status: http.StatusBadRequest,
			body: func(string) []byte { return []byte(`<xml><return_code>SUCCESS</return_code>`) }},
		{name: "empty body", status: http.StatusBadRequest, body: func(string) []byte { return nil }},
		{name: "DTD", status: http.StatusBadRequest,
			body: func(string) []byte {
				return []byte(`<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><return_code>&x;</return_code></xml>`)
			}},
		{name: "return_code FAIL", status: http.StatusBadRequest,
			body: func(string) []byte {
				return []byte(`<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[SIGNERROR]]></return_msg></xml>`)
			}},
		{name: "unknown merchant", status: http.StatusBadRequest,
			body: func(otn string) []byte { return stranger.V2Pay(pay(otn)) }},
		{name: "merchant without a v2 key", status: http.StatusBadRequest,
			body: func(otn string) []byte { return h.v3only.V2Pay(pay(otn)) }},
		{name: "invalid total_fee", status: http.StatusBadRequest,
			body: func(otn string) []byte {
				p := pay(otn)
				p.Extra = map[string]string{"total_fee": "one yuan"}
				return h.m.V2Pay(p)
			}},
		{name: "body over 64 KiB", status: http.StatusRequestEntityTooLarge,
			body: func(otn string) []byte { p := pay(otn); p.Attach = strings.Repeat("a", 65<<10); return h.m.V2Pay(p) }},
		{name: "store unavailable", status: http.StatusServiceUnavailable, setup: storeErr(fmt.Errorf("append: %w", eventstore.ErrUnavailable))},
		{name: "store closed", status: http.StatusServiceUnavailable, setup: storeErr(eventstore.ErrClosed)},
		{name: "append timed out", status: http.StatusServiceUnavailable, setup: storeErr(context.DeadlineExceeded)},
		{name: "disk error", status: http.StatusInternalServerError, setup: storeErr(errors.New("sqlite: disk I/O error"))},
		{name: "contention", status: http.StatusServiceUnavailable, setup: storeErr(fmt.Errorf("append: %w", eventstore.ErrWrongExpectedRevision))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			otn := "F" + strings.NewReplacer(" ", "", "_", "").Replace(tc.name)
			if len(otn) > 32 {
				otn = otn[:32]
			}
			h.placeOrder(otn, 100)
			body := h.m.V2Pay(pay(otn))
			if tc.body != nil {
				body = tc.body(otn)
			}
			if tc.setup != nil {
				tc.setup()
				defer h.fake.setAppend(nil)
			}
			mustV2Fail(t, tc.name, h.v2(body), tc.status)
			if n := countType(h.events(otn), domain.TypePaymentConfirmed); n != 0 {
				t.Errorf("%d PaymentConfirmed stored after a refusal", n)
			}
		})
	}
	if got := h.srv.Metrics().Get("v2-pay", "store_error"); got != 5 {
		t.Errorf("metric store_error = %d, want 5", got)
	}
	if got := h.srv.Metrics().Get("v2-pay", "recorded"); got != 0 {
		t.Errorf("metric recorded = %d, want 0", got)
	}
}

// TestV2ReplyLostThenRetry: the append is durable but its reply is lost.
// WeChat is told FAIL (5xx) and delivers again; the retry is acknowledged
// and nothing is stored twice.
func TestV2ReplyLostThenRetry(t *testing.T) {
	h := newHarness(t)
	h.placeOrder("LOST1", 100)
	h.fake.setAppend(func(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
		if _, err := h.store.Append(ctx, stream, expected, events...); err != nil {
			return eventstore.AppendResult{}, err
		}
		return eventstore.AppendResult{}, fmt.Errorf("append %s: reply lost: %w", stream, eventstore.ErrUnavailable)
	})
	body := h.m.V2Pay(wxsim.PayParams{OutTradeNo: "LOST1", TotalFee: 100})
	mustV2Fail(t, "lost reply", h.v2(body), http.StatusServiceUnavailable)
	h.fake.setAppend(nil)
	if r := h.v2(body); r.status != http.StatusOK || r.body != v2SuccessBody {
		t.Fatalf("retry: %d %q, want 200 SUCCESS", r.status, r.body)
	}
	if n := countType(h.events("LOST1"), domain.TypePaymentConfirmed); n != 1 {
		t.Errorf("%d PaymentConfirmed stored, want 1", n)
	}
}

func TestV3Replies(t *testing.T) {
	h := newHarness(t)
	pay := func(otn string) wxsim.PayParams { return wxsim.PayParams{OutTradeNo: otn, TotalFee: 100} }

	h.placeOrder("V3OK", 100)
	header, body := h.m.V3Pay(pay("V3OK"))
	for _, what := range []string{"first delivery", "retry"} {
		r := h.v3(header, body)
		if r.status != http.StatusNoContent || r.body != "" {
			t.Fatalf("%s: %d %q, want 204 and no body", what, r.status, r.body)
		}
	}
	if n := countType(h.events("V3OK"), domain.TypePaymentConfirmed); n != 1 {
		t.Fatalf("%d PaymentConfirmed stored, want 1", n)
	}

	type notice struct {
		header http.Header
		body   []byte
	}
	signed := func(m *wxsim.Merchant, body []byte) notice { return notice{m.SignV3(body), body} }
	for _, tc := range []struct {
		name   string
		notice func(otn string) notice
		setup  func()
		status int
	}{
		{name: "unknown serial", status: http.StatusUnauthorized, notice: func(otn string) notice {
			hd, b := h.m.V3Pay(pay(otn))
			hd.Set(wechatpay.HeaderSerial, "PUB_KEY_ID_0000")
			return notice{hd, b}
		}},
		{name: "no serial", status: http.StatusUnauthorized, notice: func(otn string) notice {
			hd, b := h.m.V3Pay(pay(otn))
			hd.Del(wechatpay.HeaderSerial)
			return notice{hd, b}
		}},
		{name: "body changed after signing", status: http.StatusUnauthorized, notice: func(otn string) notice {
			hd, b := h.m.V3Pay(pay(otn))
			return notice{hd, append(b, ' ')}
		}},
		{name: "signed 10 minutes ago", status: http.StatusUnauthorized, notice: func(otn string) notice {
			old := *h.m
			old.Now = func() time.Time { return testNow.Add(-10 * time.Minute) }
			hd, b := old.V3Pay(pay(otn))
			return notice{hd, b}
		}},
		{name: "resource under another APIv3 key", status: http.StatusUnauthorized, notice: func(otn string) notice {
			other := *h.m
			other.APIv3Key = strings.Repeat("x", 32)
			hd, b := other.V3Pay(pay(otn))
			return notice{hd, b}
		}},
		{name: "unsupported event_type", status: http.StatusBadRequest, notice: func(otn string) notice {
			return signed(h.m, h.m.V3Envelope("TRANSACTION.REFUNDED", "?", "transaction", h.m.V3Transaction(pay(otn))))
		}},
		{name: "transaction of another mchid", status: http.StatusBadRequest, notice: func(otn string) notice {
			other := *h.m
			other.MchID = "1999999999"
			hd, b := other.V3Pay(pay(otn))
			return notice{hd, b}
		}},
		{name: "not JSON", status: http.StatusBadRequest, notice: func(string) notice {
			return signed(h.m, []byte(`not json`))
		}},
		{name: "body over 64 KiB", status: http.StatusRequestEntityTooLarge, notice: func(otn string) notice {
			p := pay(otn)
			p.Attach = strings.Repeat("a", 65<<10)
			hd, b := h.m.V3Pay(p)
			return notice{hd, b}
		}},
		{name: "store unavailable", status: http.StatusServiceUnavailable,
			setup: func() { h.fake.failWith(fmt.Errorf("append: %w", eventstore.ErrUnavailable)) }},
		{name: "disk error", status: http.StatusInternalServerError,
			setup: func() { h.fake.failWith(errors.New("sqlite: disk I/O error")) }},
		{name: "contention", status: http.StatusServiceUnavailable,
			setup: func() { h.fake.failWith(fmt.Errorf("append: %w", eventstore.ErrWrongExpectedRevision)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			otn := "V3" + strings.ReplaceAll(tc.name, " ", "")
			if len(otn) > 32 {
				otn = otn[:32]
			}
			h.placeOrder(otn, 100)
			hd, b := h.m.V3Pay(pay(otn))
			n := notice{hd, b}
			if tc.notice != nil {
				n = tc.notice(otn)
			}
			if tc.setup != nil {
				tc.setup()
				defer h.fake.setAppend(nil)
			}
			mustV3Fail(t, tc.name, h.v3(n.header, n.body), tc.status)
			if n := countType(h.events(otn), domain.TypePaymentConfirmed); n != 0 {
				t.Errorf("%d PaymentConfirmed stored after a refusal", n)
			}
		})
	}

	// WeChat's signature probe is refused with SIGN_ERROR (and a 4xx).
	hd, b := h.m.V3Pay(pay("V3OK"))
	hd.Set(wechatpay.HeaderSignature, wechatpay.SignatureProbePrefix+"probe")
	if r := h.v3(hd, b); r.status != http.StatusUnauthorized || !strings.Contains(r.body, `"SIGN_ERROR"`) {
		t.Errorf("signature probe: %d %s, want 401 SIGN_ERROR", r.status, r.body)
	}
}

// TestRefusalOutcomesAreCounted: refusals count as rejected, store
// failures as store_error, so an operator can tell them apart.
func TestRefusalOutcomesAreCounted(t *testing.T) {
	h := newHarness(t)
	h.placeOrder("M1", 100)
	h.v2(h.m.V2PayTampered(wxsim.PayParams{OutTradeNo: "M1", TotalFee: 100}, "total_fee", "1"))
	h.fake.failWith(app.ErrContention)
	h.v2(h.m.V2Pay(wxsim.PayParams{OutTradeNo: "M1", TotalFee: 100}))
	h.fake.setAppend(nil)
	if r := h.v2(h.m.V2Pay(wxsim.PayParams{OutTradeNo: "M1", TotalFee: 90})); r.status != http.StatusOK {
		t.Fatalf("amount mismatch: %d %s, want 200 (recorded as an anomaly)", r.status, r.body)
	}
	for outcome, want := range map[string]int64{"rejected": 1, "store_error": 1, "anomaly": 1, "recorded": 0} {
		if got := h.srv.Metrics().Get("v2-pay", outcome); got != want {
			t.Errorf("metric %s = %d, want %d", outcome, got, want)
		}
	}
	r := h.do(http.MethodGet, "/metrics", nil, nil)
	for _, line := range []string{
		`ledger_notifications_total{channel="v2-pay",outcome="rejected"} 1`,
		`ledger_notifications_total{channel="v2-pay",outcome="store_error"} 1`,
		`ledger_anomalies_total{channel="v2-pay",code="AMOUNT_MISMATCH"} 1`,
	} {
		if !strings.Contains(r.body, line+"\n") {
			t.Errorf("/metrics lacks %s:\n%s", line, r.body)
		}
	}
}
