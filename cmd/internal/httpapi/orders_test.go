package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/projections"
)

func TestPlaceOrderReplies(t *testing.T) {
	h := newHarness(t)
	r := h.postJSON("/v1/orders", orderJSON(h.m, "O1", 100))
	var v projections.OrderView
	if err := json.Unmarshal([]byte(r.body), &v); err != nil || r.status != http.StatusCreated {
		t.Fatalf("place: %d %s (err %v), want 201 and the order", r.status, r.body, err)
	}
	if v.Status != domain.StatusPending || v.TotalFee != 100 || v.OutTradeNo != "O1" || v.MchID != h.m.MchID {
		t.Errorf("place: view %+v, want the PENDING order of 100 fen", v)
	}
	if r := h.postJSON("/v1/orders", orderJSON(h.m, "O1", 100)); r.status != http.StatusOK {
		t.Errorf("identical order again: %d %s, want 200", r.status, r.body)
	}
	r = h.postJSON("/v1/orders", orderJSON(h.m, "O1", 200))
	var conflict struct {
		Error string                `json:"error"`
		Order projections.OrderView `json:"order"`
	}
	if err := json.Unmarshal([]byte(r.body), &conflict); err != nil || r.status != http.StatusConflict || conflict.Order.TotalFee != 100 {
		t.Errorf("conflicting order: %d %s (err %v), want 409 with the stored order", r.status, r.body, err)
	}
	// A second appid of the merchant is accepted; an unknown one is not.
	other := `{"mch_id":"` + h.m.MchID + `","appid":"wxminiprogram0001","out_trade_no":"O2","total_fee":1,"description":"x"}`
	if r := h.postJSON("/v1/orders", other); r.status != http.StatusCreated {
		t.Errorf("second appid: %d %s, want 201", r.status, r.body)
	}
	foreign := `{"mch_id":"` + h.m.MchID + `","appid":"wxsomeoneelse","out_trade_no":"O3","total_fee":1,"description":"x"}`
	if r := h.postJSON("/v1/orders", foreign); r.status != http.StatusUnprocessableEntity {
		t.Errorf("foreign appid: %d %s, want 422", r.status, r.body)
	}
	unknown := `{"mch_id":"1999999999","appid":"` + h.m.AppID + `","out_trade_no":"O4","total_fee":1,"description":"x"}`
	if r := h.postJSON("/v1/orders", unknown); r.status != http.StatusUnprocessableEntity {
		t.Errorf("unknown merchant: %d %s, want 422", r.status, r.body)
	}
	if n := len(h.events("O3")) + len(h.events("O4")); n != 0 {
		t.Errorf("refused orders stored %d events", n)
	}
}

// TestPlaceOrderValidation: a malformed body is a 400 whose "fields" names
// what is wrong (or, for JSON-level problems, whose message says it), and
// nothing is stored.
func TestPlaceOrderValidation(t *testing.T) {
	h := newHarness(t)
	base := func() map[string]any {
		return map[string]any{"mch_id": h.m.MchID, "appid": h.m.AppID, "out_trade_no": "VAL1", "total_fee": 100, "description": "coffee"}
	}
	with := func(k string, v any) string {
		m := base()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	valid := with("mch_id", h.m.MchID)
	for _, tc := range []struct {
		name   string
		body   string
		status int
		field  string // must be a key of "fields"
		msg    string // must be in "error" (when no field)
	}{
		{"total_fee missing", with("total_fee", nil), 400, "total_fee", ""},
		{"total_fee zero", with("total_fee", 0), 400, "total_fee", ""},
		{"total_fee negative", with("total_fee", -5), 400, "total_fee", ""},
		{"total_fee too big", with("total_fee", int64(100_000_000_001)), 400, "total_fee", ""},
		{"total_fee a string", with("total_fee", "100"), 400, "total_fee", ""},
		{"total_fee fractional", with("total_fee", 1.5), 400, "total_fee", ""},
		{"description missing", with("description", nil), 400, "description", ""},
		{"description too long", with("description", strings.Repeat("d", 129)), 400, "description", ""},
		{"out_trade_no missing", with("out_trade_no", nil), 400, "out_trade_no", ""},
		{"out_trade_no bad characters", with("out_trade_no", "A1/../x"), 400, "out_trade_no", ""},
		{"out_trade_no too long", with("out_trade_no", strings.Repeat("9", 33)), 400, "out_trade_no", ""},
		{"mch_id not digits", with("mch_id", "19000abc"), 400, "mch_id", ""},
		{"appid missing", with("appid", nil), 400, "appid", ""},
		{"fee_type lowercase", with("fee_type", "cny"), 400, "fee_type", ""},
		{"unknown field", with("totl_fee", 100), 400, "totl_fee", ""},
		{"not JSON", `mch_id=1`, 400, "", "not valid JSON"},
		{"empty body", ``, 400, "", "not valid JSON"},
		{"trailing garbage", valid + ` x`, 400, "", "trailing data"},
		{"second object", valid + ` {}`, 400, "", "trailing data"},
		{"trailing brace", valid + `}`, 400, "", "trailing data"},
		{"trailing bracket", valid + `]`, 400, "", "trailing data"},
		{"body over 64 KiB", with("openid", strings.Repeat("o", 65<<10)), 413, "", "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.postJSON("/v1/orders", tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			e := decodeError(t, r)
			if tc.field != "" && e.Fields[tc.field] == "" {
				t.Errorf("fields %v do not name %s", e.Fields, tc.field)
			}
			if tc.msg != "" && !strings.Contains(e.Error, tc.msg) {
				t.Errorf("error %q does not say %q", e.Error, tc.msg)
			}
		})
	}
	// Several problems at once are all named.
	r := h.postJSON("/v1/orders", `{"mch_id":"`+h.m.MchID+`","appid":"`+h.m.AppID+`"}`)
	e := decodeError(t, r)
	for _, f := range []string{"total_fee", "description", "out_trade_no"} {
		if e.Fields[f] == "" {
			t.Errorf("missing %s not named in %v", f, e.Fields)
		}
	}
	if n := len(h.events("VAL1")); n != 0 {
		t.Errorf("invalid requests stored %d events", n)
	}
	// And the valid body is accepted, so the cases above failed for their
	// own reason.
	if r := h.postJSON("/v1/orders", valid); r.status != http.StatusCreated {
		t.Errorf("valid body: %d %s, want 201", r.status, r.body)
	}
}

func TestCloseOrderReplies(t *testing.T) {
	h := newHarness(t)
	path := func(otn string) string { return "/v1/merchants/" + h.m.MchID + "/orders/" + otn + "/close" }
	if r := h.postJSON(path("C0"), `{"reason":"timeout"}`); r.status != http.StatusNotFound {
		t.Errorf("close unknown order: %d %s, want 404", r.status, r.body)
	}
	h.placeOrder("C1", 100)
	r := h.postJSON(path("C1"), `{"reason":"timeout"}`)
	var v projections.OrderView
	if err := json.Unmarshal([]byte(r.body), &v); err != nil || r.status != http.StatusOK || v.Status != domain.StatusClosed {
		t.Errorf("close: %d %s, want 200 CLOSED", r.status, r.body)
	}
	if r := h.postJSON(path("C1"), ``); r.status != http.StatusOK {
		t.Errorf("close again without a body: %d %s, want 200", r.status, r.body)
	}
	if r := h.postJSON(path("C1"), `{"reason":"x","extra":1}`); r.status != http.StatusBadRequest {
		t.Errorf("close with an unknown field: %d %s, want 400", r.status, r.body)
	}
	h.placeOrder("C2", 100)
	if r := h.v2(h.m.V2Pay(wxsim.PayParams{OutTradeNo: "C2", TotalFee: 100})); r.status != http.StatusOK {
		t.Fatalf("pay: %d %s", r.status, r.body)
	}
	if r := h.postJSON(path("C2"), `{}`); r.status != http.StatusConflict {
		t.Errorf("close a paid order: %d %s, want 409", r.status, r.body)
	}
	if r := h.postJSON("/v1/merchants/1999999999/orders/C1/close", `{}`); r.status != http.StatusNotFound {
		t.Errorf("close for an unknown merchant: %d %s, want 404", r.status, r.body)
	}
}

func TestDailyTotalsQueryValidation(t *testing.T) {
	h := newHarness(t)
	h.placeOrder("D1", 100)
	if r := h.v2(h.m.V2Pay(wxsim.PayParams{OutTradeNo: "D1", TotalFee: 100, TimeEnd: testNow})); r.status != http.StatusOK {
		t.Fatalf("pay: %d %s", r.status, r.body)
	}
	base := "/v1/merchants/" + h.m.MchID + "/totals/daily"
	for _, tc := range []struct {
		name, query string
		fields      []string
	}{
		{"bad from", "?from=2025-02-30", []string{"from"}},
		{"from not a date", "?from=yesterday&to=2025-03-14", []string{"from"}},
		{"bad to", "?from=2025-03-01&to=14/03/2025", []string{"to"}},
		{"both bad", "?from=2025-3-1&to=2025-13-01", []string{"from", "to"}},
		{"datetime", "?from=2025-03-14T00:00:00Z", []string{"from"}},
		{"to before from", "?from=2025-03-14&to=2025-03-13", []string{"to"}},
		{"over 366 days", "?from=2024-01-01&to=2025-03-14", []string{"to"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(http.MethodGet, base+tc.query, nil, nil)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", r.status, r.body)
			}
			e := decodeError(t, r)
			for _, f := range tc.fields {
				if e.Fields[f] == "" {
					t.Errorf("fields %v do not name %s", e.Fields, f)
				}
			}
			if len(e.Fields) != len(tc.fields) {
				t.Errorf("fields %v, want only %v", e.Fields, tc.fields)
			}
		})
	}

	var totals struct {
		MchID string                   `json:"mch_id"`
		From  string                   `json:"from"`
		To    string                   `json:"to"`
		Days  []projections.DailyTotal `json:"days"`
	}
	for _, q := range []string{"", "?from=2025-03-14", "?from=2025-03-01&to=2025-03-31", "?from=2024-03-14&to=2025-03-14"} {
		r := h.do(http.MethodGet, base+q, nil, nil)
		if r.status != http.StatusOK {
			t.Errorf("%q: %d %s, want 200", q, r.status, r.body)
			continue
		}
		if err := json.Unmarshal([]byte(r.body), &totals); err != nil {
			t.Fatal(err)
		}
		var paid int64
		for _, d := range totals.Days {
			paid += d.PaymentsFee
		}
		if totals.MchID != h.m.MchID || paid != 100 {
			t.Errorf("%q: %s, want the 100 fen paid on 2025-03-14", q, r.body)
		}
	}
	if totals.From != "2024-03-14" || totals.To != "2025-03-14" {
		t.Errorf("echoed range %s..%s, want 2024-03-14..2025-03-14", totals.From, totals.To)
	}
	if r := h.do(http.MethodGet, "/v1/merchants/1999999999/totals/daily", nil, nil); r.status != http.StatusNotFound {
		t.Errorf("unknown merchant: %d %s, want 404", r.status, r.body)
	}
}
