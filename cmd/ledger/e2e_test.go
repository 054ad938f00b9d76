package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

// TestV2ExactlyOnceSequential: WeChat's whole retry series of one
// notification (15 copies in a row, as when our replies get lost) is
// acknowledged every time with the exact SUCCESS reply, and the payment is
// stored once.
func TestV2ExactlyOnceSequential(t *testing.T) {
	t.Parallel()
	testV2ExactlyOnceSequential(t, harnessOptions{})
}

// testV2ExactlyOnceSequential is the body of TestV2ExactlyOnceSequential, on a harness built
// from o (which picks the event store).
func testV2ExactlyOnceSequential(t *testing.T, o harnessOptions) {
	h := startHarness(t, o)
	h.placeOrder(h.m, "SEQ001", 2990)
	body := h.m.V2Pay(wxsim.PayParams{OutTradeNo: "SEQ001", TotalFee: 2990})
	for i := range 15 {
		mustV2Success(t, fmt.Sprintf("copy %d", i+1), h.v2(body))
	}
	evs := h.events(h.m, "SEQ001")
	if n := countType(evs, domain.TypePaymentConfirmed); n != 1 || len(evs) != 2 {
		t.Fatalf("want OrderPlaced + one PaymentConfirmed, got %v", types(evs))
	}
	h.mustOrder(h.m, "SEQ001", domain.StatusPaid, 2990, 0)
}

// TestV2ExactlyOnceConcurrent: 64 copies of one notification at once (WeChat
// delivering from several servers): all acknowledged, one payment.
func TestV2ExactlyOnceConcurrent(t *testing.T) {
	t.Parallel()
	testV2ExactlyOnceConcurrent(t, harnessOptions{})
}

// testV2ExactlyOnceConcurrent is the body of TestV2ExactlyOnceConcurrent, on a harness built
// from o (which picks the event store).
func testV2ExactlyOnceConcurrent(t *testing.T, o harnessOptions) {
	h := startHarness(t, o)
	h.placeOrder(h.m, "CONC001", 100)
	res, err := h.deliver("/wechatpay/v2/notify", wxsim.V2Request(h.m.V2Pay(wxsim.PayParams{OutTradeNo: "CONC001", TotalFee: 100})), 64)
	if err != nil || len(res.Attempts) != 1 {
		t.Fatalf("deliver: %v, %d attempts", err, len(res.Attempts))
	}
	for i, o := range res.Attempts[0].Copies {
		if !o.Accepted || string(o.Body) != v2SuccessBody || o.Status != http.StatusOK ||
			!strings.HasPrefix(o.Header.Get("Content-Type"), "text/xml") {
			t.Fatalf("copy %d: %d %q %v", i, o.Status, o.Body, o.Err)
		}
	}
	evs := h.events(h.m, "CONC001")
	if n := countType(evs, domain.TypePaymentConfirmed); n != 1 || len(evs) != 2 {
		t.Fatalf("want OrderPlaced + one PaymentConfirmed, got %v", types(evs))
	}
	h.mustOrder(h.m, "CONC001", domain.StatusPaid, 100, 0)
}

// TestV2ExactlyOnceMixed: 20 different notifications, 64 concurrent copies
// of each, all at once: every copy acknowledged, every order paid once, and
// the store holds exactly 20 payments.
func TestV2ExactlyOnceMixed(t *testing.T) {
	t.Parallel()
	testV2ExactlyOnceMixed(t, harnessOptions{})
}

// testV2ExactlyOnceMixed is the body of TestV2ExactlyOnceMixed, on a harness built
// from o (which picks the event store).
func testV2ExactlyOnceMixed(t *testing.T, o harnessOptions) {
	h := startHarness(t, o)
	const orders, copies = 20, 64
	reqs := make([]wxsim.Request, orders)
	for i := range orders {
		otn := fmt.Sprintf("MIX%03d", i)
		h.placeOrder(h.m, otn, int64(100+i))
		reqs[i] = wxsim.V2Request(h.m.V2Pay(wxsim.PayParams{OutTradeNo: otn, TotalFee: int64(100 + i)}))
	}
	var wg sync.WaitGroup
	errs := make([]error, orders)
	results := make([]wxsim.Result, orders)
	for i := range orders {
		wg.Go(func() { results[i], errs[i] = h.deliver("/wechatpay/v2/notify", reqs[i], copies) })
	}
	wg.Wait()
	for i := range orders {
		if errs[i] != nil || len(results[i].Attempts) != 1 {
			t.Fatalf("notification %d: %v after %d attempts", i, errs[i], len(results[i].Attempts))
		}
		for c, o := range results[i].Attempts[0].Copies {
			if !o.Accepted || string(o.Body) != v2SuccessBody {
				t.Fatalf("notification %d copy %d: %d %q %v", i, c, o.Status, o.Body, o.Err)
			}
		}
	}
	for i := range orders {
		otn := fmt.Sprintf("MIX%03d", i)
		if n := countType(h.events(h.m, otn), domain.TypePaymentConfirmed); n != 1 {
			t.Errorf("%s: %d PaymentConfirmed", otn, n)
		}
		h.mustOrder(h.m, otn, domain.StatusPaid, int64(100+i), 0)
	}
	if n := countStored(h.storeEvents(), domain.TypePaymentConfirmed); n != orders {
		t.Fatalf("store holds %d PaymentConfirmed, want %d", n, orders)
	}
}

func countStored(recs []eventstore.RecordedEvent, typ string) int {
	n := 0
	for _, r := range recs {
		if r.Type == typ {
			n++
		}
	}
	return n
}

// TestV2Anomalies: every signed-but-wrong payment is acknowledged (WeChat
// must stop retrying: the money is real) and recorded as an anomaly; every
// unverifiable message is refused and leaves the store untouched.
func TestV2Anomalies(t *testing.T) {
	t.Parallel()
	testV2Anomalies(t, harnessOptions{})
}

// testV2Anomalies is the body of TestV2Anomalies, on a harness built
// from o (which picks the event store).
func testV2Anomalies(t *testing.T, o harnessOptions) {
	h := startHarness(t, o)
	m := h.m

	t.Run("AMOUNT_MISMATCH", func(t *testing.T) {
		h := h.with(t)
		h.placeOrder(m, "AM001", 8800)
		mustV2Success(t, "underpaid", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "AM001", TotalFee: 1})))
		v := h.mustOrder(m, "AM001", domain.StatusAmountMismatch, 0, 0)
		if !hasAnomaly(v, domain.AmountMismatch) {
			t.Fatalf("anomalies %+v", v.Anomalies)
		}
		if n := countType(h.events(m, "AM001"), domain.TypePaymentConfirmed); n != 0 {
			t.Fatalf("%d PaymentConfirmed for an underpaid order", n)
		}
	})
	t.Run("UNKNOWN_ORDER", func(t *testing.T) {
		h := h.with(t)
		body := m.V2Pay(wxsim.PayParams{OutTradeNo: "UO001", TotalFee: 1200})
		mustV2Success(t, "unknown order", h.v2(body))
		mustV2Success(t, "unknown order again", h.v2(body))
		v := h.order(m, "UO001")
		if v.PaidFee != 1200 || !hasAnomaly(v, domain.UnknownOrder) {
			t.Fatalf("view %+v", v)
		}
		if n := countType(h.events(m, "UO001"), domain.TypePaymentConfirmed); n != 1 {
			t.Fatalf("%d PaymentConfirmed", n)
		}
	})
	t.Run("DUPLICATE_PAYMENT", func(t *testing.T) {
		h := h.with(t)
		h.placeOrder(m, "DP001", 4500)
		first := m.V2Pay(wxsim.PayParams{OutTradeNo: "DP001", TransactionID: "4200000000000000000000000001", TotalFee: 4500})
		second := m.V2Pay(wxsim.PayParams{OutTradeNo: "DP001", TransactionID: "4200000000000000000000000002", TotalFee: 4500})
		mustV2Success(t, "first", h.v2(first))
		mustV2Success(t, "second transaction", h.v2(second))
		mustV2Success(t, "second transaction again", h.v2(second))
		v := h.mustOrder(m, "DP001", domain.StatusPaid, 4500, 0)
		if !hasAnomaly(v, domain.DuplicatePayment) || v.TransactionID != "4200000000000000000000000001" {
			t.Fatalf("view %+v", v)
		}
		evs := h.events(m, "DP001")
		if tx := paymentTx(t, evs); len(tx) != 1 || countType(evs, domain.TypeAnomalyDetected) != 1 {
			t.Fatalf("events %v", types(evs))
		}
	})
	t.Run("APPID_MISMATCH", func(t *testing.T) {
		h := h.with(t)
		h.placeOrder(m, "AP001", 300)
		mustV2Success(t, "other appid", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "AP001", TotalFee: 300, AppID: "wx0000000000000000"})))
		v := h.mustOrder(m, "AP001", domain.StatusPending, 0, 0)
		if !hasAnomaly(v, domain.AppIDMismatch) {
			t.Fatalf("anomalies %+v", v.Anomalies)
		}
	})
	t.Run("result_code FAIL", func(t *testing.T) {
		h := h.with(t)
		h.placeOrder(m, "RF001", 300)
		mustV2Success(t, "failed payment", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "RF001", TotalFee: 300,
			ResultCode: "FAIL", ErrCode: "NOTENOUGH", ErrCodeDes: "余额不足"})))
		h.mustOrder(m, "RF001", domain.StatusPending, 0, 0)
		evs := h.events(m, "RF001")
		if countType(evs, domain.TypePaymentFailed) != 1 || countType(evs, domain.TypePaymentConfirmed) != 0 {
			t.Fatalf("events %v", types(evs))
		}
	})

	t.Run("PAID_AFTER_CLOSE", func(t *testing.T) {
		h := h.with(t)
		h.placeOrder(m, "PC001", 300)
		if r := h.post(orderPath(m.MchID, "PC001")+"/close", http.Header{"Content-Type": {"application/json"}}, []byte(`{"reason":"timeout"}`)); r.status != http.StatusOK {
			t.Fatalf("close: %v", r)
		}
		mustV2Success(t, "paid after close", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "PC001", TotalFee: 300})))
		v := h.mustOrder(m, "PC001", domain.StatusClosed, 0, 0)
		if !hasAnomaly(v, domain.PaidAfterClose) {
			t.Fatalf("anomalies %+v", v.Anomalies)
		}
	})
	t.Run("HMAC-SHA256", func(t *testing.T) {
		h := h.with(t)
		h.placeOrder(m, "HM001", 300)
		body := m.V2Pay(wxsim.PayParams{OutTradeNo: "HM001", TotalFee: 300, SignType: wechatpay.SignTypeHMACSHA256})
		mustV2Success(t, "HMAC-SHA256", h.v2(body))
		mustV2Success(t, "HMAC-SHA256 again", h.v2(body))
		h.mustOrder(m, "HM001", domain.StatusPaid, 300, 0)
	})

	// Refusals: nothing may be written.
	h.placeOrder(m, "REF001", 500)
	valid := m.V2Pay(wxsim.PayParams{OutTradeNo: "REF001", TotalFee: 500})
	before := len(h.storeEvents())
	other := newMerchant(t) // not configured on this ledger
	refusals := []struct {
		name   string
		body   []byte
		status int
	}{
		{"tampered total_fee", m.V2PayTampered(wxsim.PayParams{OutTradeNo: "REF001", TotalFee: 500}, "total_fee", "1"), http.StatusUnauthorized},
		{"tampered out_trade_no", m.V2PayTampered(wxsim.PayParams{OutTradeNo: "REF002", TotalFee: 500}, "out_trade_no", "REF001"), http.StatusUnauthorized},
		{"signed with another key", m.V2PayTampered(wxsim.PayParams{OutTradeNo: "REF001", TotalFee: 500}, "sign", strings.Repeat("A", 32)), http.StatusUnauthorized},
		{"unknown mch_id", other.V2Pay(wxsim.PayParams{OutTradeNo: "REF001", TotalFee: 500}), http.StatusBadRequest},
		{"XXE DOCTYPE", []byte(`<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` +
			`<xml><return_code>SUCCESS</return_code><mch_id>` + m.MchID + `</mch_id><attach>&xxe;</attach></xml>`), http.StatusBadRequest},
		{"DOCTYPE before a validly signed message", append([]byte(`<!DOCTYPE xml>`), valid...), http.StatusBadRequest},
		{"garbage", []byte("\x00\x01 not xml at all {}"), http.StatusBadRequest},
		{"empty", nil, http.StatusBadRequest},
		{"return_code FAIL without sign", []byte(`<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[签名失败]]></return_msg>` +
			`<mch_id>` + m.MchID + `</mch_id><out_trade_no>REF001</out_trade_no><transaction_id>4200000000000000000000000009</transaction_id>` +
			`<total_fee>500</total_fee><result_code>SUCCESS</result_code></xml>`), http.StatusBadRequest},
		{"unknown sign_type", m.V2Pay(wxsim.PayParams{OutTradeNo: "REF001", TotalFee: 500, SignType: "SHA1"}), 0},
		{"duplicate total_fee element", bytes.Replace(valid, []byte("</xml>"), []byte("<total_fee>1</total_fee></xml>"), 1), http.StatusBadRequest},
		{"2 MiB body", append(append([]byte("<xml><attach>"), bytes.Repeat([]byte("A"), 2<<20)...), "</attach></xml>"...), http.StatusRequestEntityTooLarge},
	}
	for _, rc := range refusals {
		t.Run("refused/"+rc.name, func(t *testing.T) {
			mustV2Fail(t, rc.name, h.v2(rc.body), rc.status)
		})
	}
	if after := len(h.storeEvents()); after != before {
		t.Fatalf("refused messages wrote %d events", after-before)
	}
	h.mustOrder(m, "REF001", domain.StatusPending, 0, 0)
	// The server still serves after all that.
	if r := h.get("/healthz"); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("healthz after refusals: %v", r)
	}
	mustV2Success(t, "valid after refusals", h.v2(valid))
	h.mustOrder(m, "REF001", domain.StatusPaid, 500, 0)
}

// TestOrderPlacement covers POST /v1/orders: created, idempotent repeat,
// conflict, field errors, unknown merchant or appid, concurrent repeats.
func TestOrderPlacement(t *testing.T) {
	t.Parallel()
	testOrderPlacement(t, harnessOptions{})
}

// testOrderPlacement is the body of TestOrderPlacement, on a harness built
// from o (which picks the event store).
func testOrderPlacement(t *testing.T, o harnessOptions) {
	foreign := newMerchant(t)
	o.merchants = []*wxsim.Merchant{newMerchant(t), foreign}
	h := startHarness(t, o)
	m := h.m
	place := func(body any) reply { return h.placeRaw(body) }
	good := orderRequest{MchID: m.MchID, AppID: m.AppID, OutTradeNo: "PO001", TotalFee: 1999, Description: "a teapot"}

	first := place(good)
	if first.err != nil || first.status != http.StatusCreated || !strings.HasPrefix(first.header.Get("Content-Type"), "application/json") {
		t.Fatalf("first placement: %v", first)
	}
	again := place(good)
	if again.err != nil || again.status != http.StatusOK || !bytes.Equal(again.body, first.body) {
		t.Fatalf("identical placement: want 200 with the same body %s, got %v", first.body, again)
	}
	var view struct {
		Status   string `json:"status"`
		TotalFee int64  `json:"total_fee"`
	}
	if err := json.Unmarshal(first.body, &view); err != nil || view.Status != domain.StatusPending || view.TotalFee != 1999 {
		t.Fatalf("view %s: %v", first.body, err)
	}
	conflict := good
	conflict.TotalFee = 2000
	if r := place(conflict); r.err != nil || r.status != http.StatusConflict {
		t.Fatalf("other content: want 409, got %v", r)
	}

	fieldCases := []struct {
		name  string
		body  any
		field string
	}{
		{"negative fee", map[string]any{"mch_id": m.MchID, "appid": m.AppID, "out_trade_no": "PO002", "total_fee": -5, "description": "x"}, "total_fee"},
		{"zero fee", map[string]any{"mch_id": m.MchID, "appid": m.AppID, "out_trade_no": "PO002", "total_fee": 0, "description": "x"}, "total_fee"},
		{"missing description", map[string]any{"mch_id": m.MchID, "appid": m.AppID, "out_trade_no": "PO002", "total_fee": 5}, "description"},
		{"bad out_trade_no", map[string]any{"mch_id": m.MchID, "appid": m.AppID, "out_trade_no": "PO/002 x", "total_fee": 5, "description": "x"}, "out_trade_no"},
		{"fee as string", map[string]any{"mch_id": m.MchID, "appid": m.AppID, "out_trade_no": "PO002", "total_fee": "5", "description": "x"}, "total_fee"},
	}
	for _, c := range fieldCases {
		r := place(c.body)
		var body struct {
			Error  string            `json:"error"`
			Fields map[string]string `json:"fields"`
		}
		if r.err != nil || r.status != http.StatusBadRequest || json.Unmarshal(r.body, &body) != nil || body.Fields[c.field] == "" {
			t.Errorf("%s: want 400 naming %s, got %v", c.name, c.field, r)
		}
	}
	unknownField := place(map[string]any{"mch_id": m.MchID, "appid": m.AppID, "out_trade_no": "PO002", "total_fee": 5, "description": "x", "colour": "red"})
	if unknownField.err != nil || unknownField.status != http.StatusBadRequest || !strings.Contains(string(unknownField.body), "colour") {
		t.Errorf("unknown field: want 400 naming colour, got %v", unknownField)
	}
	if r := doRequest(h.client, http.MethodPost, h.url+"/v1/orders", nil, []byte(`{"mch_id":`)); r.err != nil || r.status != http.StatusBadRequest {
		t.Errorf("truncated JSON: want 400, got %v", r)
	}
	for name, body := range map[string]orderRequest{
		"unknown merchant": {MchID: "1999999999", AppID: m.AppID, OutTradeNo: "PO003", TotalFee: 5, Description: "x"},
		"foreign appid":    {MchID: m.MchID, AppID: foreign.AppID, OutTradeNo: "PO003", TotalFee: 5, Description: "x"},
	} {
		if r := place(body); r.err != nil || r.status != http.StatusUnprocessableEntity {
			t.Errorf("%s: want 422, got %v", name, r)
		}
	}
	if evs := h.events(m, "PO002"); len(evs) != 0 {
		t.Fatalf("invalid placements wrote %v", types(evs))
	}
	if evs := h.events(m, "PO003"); len(evs) != 0 {
		t.Fatalf("refused placements wrote %v", types(evs))
	}

	// 32 clients retrying the same placement at once: one order.
	same := orderRequest{MchID: m.MchID, AppID: m.AppID, OutTradeNo: "PO004", TotalFee: 700, Description: "concurrent"}
	statuses := make([]int, 32)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() {
			r := place(same)
			if r.err != nil {
				t.Error(r.err)
			}
			statuses[i] = r.status
		})
	}
	wg.Wait()
	created, ok := 0, 0
	for _, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusOK:
			ok++
		}
	}
	if created != 1 || ok != 31 {
		t.Fatalf("concurrent placements: %d created, %d ok, statuses %v", created, ok, statuses)
	}
	if evs := h.events(m, "PO004"); countType(evs, domain.TypeOrderPlaced) != 1 || len(evs) != 1 {
		t.Fatalf("events %v", types(evs))
	}
}
