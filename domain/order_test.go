package domain_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/orderledger/orderledger/domain"
)

// richHistory touches every part of the state: a failure, a payment, a
// duplicate payment, refunds in every status, an over-refund anomaly and an
// event of an unknown type.
func richHistory() []domain.Event {
	events := hist(
		placed,
		payFail(tx1, "NOTENOUGH"),
		pay(tx1, fee, func(p *domain.Payment) { p.CashFee, p.CouponFee = 900, 100 }),
		pay(tx2, fee),
		refund("r1", domain.RefundStatusAbnormal, 300),
		refund("r1", domain.RefundStatusSuccess, 300),
		refund("r2", domain.RefundStatusClosed, 50),
		refund("r3", domain.RefundStatusSuccess, 800),
		refund("r4", domain.RefundStatusSuccess, fee, ofTx(tx2)),
	)
	return append(events, domain.UnknownEvent{Type: "InvoiceIssued", Data: []byte(`{}`)})
}

func TestClone(t *testing.T) {
	orig := domain.Fold(richHistory())
	pristine := domain.Fold(richHistory())
	if !reflect.DeepEqual(orig, pristine) {
		t.Fatal("Fold is not deterministic")
	}

	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("clone differs:\n%+v\n%+v", c, orig)
	}
	// Evolve the clone: an existing refund moves on (its *RefundRecord),
	// new refunds, transactions and anomalies arrive, new IDs are seen.
	var added []domain.Event
	for _, s := range []any{
		refund("r2", domain.RefundStatusSuccess, 50), // ignored: CLOSED is final
		refund("r5", domain.RefundStatusAbnormal, 10),
		refund("r5", domain.RefundStatusSuccess, 10),
		pay(tx3, fee),
	} {
		var events []domain.Event
		c, events, _ = apply(c, s)
		added = append(added, events...)
	}
	c = domain.Evolve(c, domain.RefundSucceeded{Refund: refund("r1", domain.RefundStatusSuccess, 300)}) // a stored duplicate
	// And mutate it directly.
	c.Transactions["4200000000000000000000000000"] = "X"
	c.Refunds["r1"].RefundFee = 1
	c.Refunds["r1"].Status = "X"
	c.RefundOrder[0] = "X"
	c.Anomalies[0].Code = "X"
	c.RefundedFee = -1

	if len(added) == 0 {
		t.Fatal("the clone decided nothing new")
	}
	if !reflect.DeepEqual(orig, pristine) {
		t.Errorf("evolving the clone changed the original:\n%+v\n%+v", orig, pristine)
	}
	for _, e := range added {
		if orig.Has(domain.ID(e)) {
			t.Errorf("original has the clone's event %s", describe(e))
		}
		if !c.Has(domain.ID(e)) {
			t.Errorf("clone lacks its event %s", describe(e))
		}
	}

	// The other way round: evolving the original leaves a clone alone.
	c2 := orig.Clone()
	snapshot := orig.Clone()
	orig, _, _ = apply(orig, refund("r6", domain.RefundStatusSuccess, 5))
	if !reflect.DeepEqual(c2, snapshot) {
		t.Error("evolving the original changed its clone")
	}

	// The zero Order clones and evolves.
	var zero domain.Order
	z := zero.Clone()
	z = domain.Evolve(z, placed)
	if zero.Placed != nil || zero.Events != 0 || z.Events != 1 {
		t.Errorf("zero %s, clone %s", zero.String(), z.String())
	}
}

func TestStreamID(t *testing.T) {
	if got := domain.StreamID("10000100", "20261130508001"); got != "order-10000100-20261130508001" {
		t.Errorf("StreamID = %q", got)
	}
	for _, otn := range []string{
		"20261130508001", "a-b", "a-b-c", "a_b", "-lead", "trail-", "__--__", "a-_-b", "x*|@", "1",
	} {
		s := domain.StreamID("1900000109", otn)
		mch, got, ok := domain.ParseStreamID(s)
		if !ok || mch != "1900000109" || got != otn {
			t.Errorf("ParseStreamID(%q) = %q, %q, %v; want 1900000109, %q", s, mch, got, ok, otn)
		}
		if !strings.HasPrefix(s, domain.StreamPrefix) {
			t.Errorf("%q lacks the prefix", s)
		}
	}
	for _, s := range []string{
		"", "order-", "order-123", "order-123-", "order--abc", "Order-1-2", "order_1-2", "orders-1-2", "$ce-order", "checkpoint",
	} {
		if mch, otn, ok := domain.ParseStreamID(s); ok {
			t.Errorf("ParseStreamID(%q) = %q, %q, true; want not an order stream", s, mch, otn)
		}
	}
}

// TestOrderJSONRoundTrip: a projection keeps the folded Order as JSON and
// goes on evolving it (and a cache may decide from it). The decoded state
// must be the same state.
func TestOrderJSONRoundTrip(t *testing.T) {
	history := richHistory()
	o := domain.Fold(history)
	b, err := json.Marshal(o)
	mustNoErr(t, err)
	if bp, err := json.Marshal(&o); err != nil || !bytes.Equal(bp, b) {
		t.Errorf("Marshal(&o) differs from Marshal(o): %v", err)
	}
	var back domain.Order
	mustNoErr(t, json.Unmarshal(b, &back))

	if back.Status() != o.Status() || back.Status() != domain.StatusRefunded {
		t.Errorf("status %s, want %s", back.Status(), o.Status())
	}
	if back.PaidFee != o.PaidFee || back.RefundedFee != o.RefundedFee || back.CashFee != o.CashFee ||
		back.Failures != o.Failures || back.Events != o.Events || back.TotalFee() != o.TotalFee() ||
		back.MchID != o.MchID || back.OutTradeNo != o.OutTradeNo {
		t.Errorf("restored %s, was %s", back.String(), o.String())
	}
	if !maps.Equal(back.Transactions, o.Transactions) || len(back.Transactions) != 2 {
		t.Errorf("transactions %v, was %v", back.Transactions, o.Transactions)
	}
	if len(back.Refunds) != len(o.Refunds) || len(o.Refunds) != 4 {
		t.Errorf("refunds %d, was %d", len(back.Refunds), len(o.Refunds))
	}
	for id, r := range o.Refunds {
		br := back.Refunds[id]
		if br == nil || br.RefundID != r.RefundID || br.OutRefundNo != r.OutRefundNo || br.TransactionID != r.TransactionID ||
			br.Status != r.Status || br.RefundFee != r.RefundFee || !br.SucceededAt.Equal(r.SucceededAt) {
			t.Errorf("refund %s: %+v, was %+v", id, br, r)
		}
	}
	if !slices.Equal(back.RefundOrder, o.RefundOrder) {
		t.Errorf("refund order %v, was %v", back.RefundOrder, o.RefundOrder)
	}
	if len(back.Anomalies) != len(o.Anomalies) || anomalyCodes(back) != "DUPLICATE_PAYMENT,REFUND_EXCEEDS_PAID" {
		t.Errorf("anomalies %s, was %s", anomalyCodes(back), anomalyCodes(o))
	}
	for i, a := range o.Anomalies {
		ba := back.Anomalies[i]
		if ba.Code != a.Code || ba.TransactionID != a.TransactionID || ba.RefundID != a.RefundID ||
			ba.ExpectedFee != a.ExpectedFee || ba.NotifiedFee != a.NotifiedFee || ba.Detail != a.Detail || !ba.DetectedAt.Equal(a.DetectedAt) {
			t.Errorf("anomaly %d: %+v, was %+v", i, ba, a)
		}
	}
	if back.Placed == nil || !domain.SamePlacement(*back.Placed, *o.Placed) || !back.Placed.PlacedAt.Equal(o.Placed.PlacedAt) {
		t.Errorf("placed %+v, was %+v", back.Placed, o.Placed)
	}
	if back.Payment == nil || back.Payment.TransactionID != tx1 || back.Payment.Evidence.Body != o.Payment.Evidence.Body {
		t.Errorf("payment %+v", back.Payment)
	}
	for _, e := range history {
		if id := domain.ID(e); id != ([16]byte{}) && !back.Has(id) {
			t.Errorf("restored state forgot event %s", describe(e))
		}
	}
	if again, err := json.Marshal(back); err != nil || !bytes.Equal(again, b) {
		t.Errorf("JSON not stable through a round trip: %v\n%s\n%s", err, again, b)
	}

	// It goes on exactly like the original: every possible next step
	// decides the same events and leads to the same state.
	for _, s := range append(slices.Clone(notePool), cmdPool...) {
		fromOrig, errO := decide(o, s)
		fromBack, errB := decide(back, s)
		if !slices.Equal(eventIDs(fromOrig), eventIDs(fromBack)) || (errO == nil) != (errB == nil) {
			t.Errorf("%T: restored decides %q %v, original %q %v", s, describeAll(fromBack), errB, describeAll(fromOrig), errO)
		}
		nextO, nextB := o.Clone(), back.Clone()
		for _, e := range fromOrig {
			nextO, nextB = domain.Evolve(nextO, e), domain.Evolve(nextB, e)
		}
		if nextO.String() != nextB.String() || nextO.RefundedFee != nextB.RefundedFee {
			t.Errorf("%T: restored evolves to %s, original to %s", s, nextB.String(), nextO.String())
		}
	}

	// The zero state, and a state written before event IDs were kept.
	var zero, zback domain.Order
	zb, err := json.Marshal(zero)
	mustNoErr(t, err)
	mustNoErr(t, json.Unmarshal(zb, &zback))
	if zback.Status() != domain.StatusPending || zback.Events != 0 {
		t.Errorf("zero: %s", zback.String())
	}
	if zback = domain.Evolve(zback, placed); zback.Events != 1 || zback.Placed == nil {
		t.Errorf("zero restored then evolved: %s", zback.String())
	}
	var old domain.Order
	mustNoErr(t, json.Unmarshal([]byte(`{"MchID":"1","OutTradeNo":"2","PaidFee":5,"Events":3}`), &old))
	if old.PaidFee != 5 || old.Events != 3 || old.Has(domain.ID(placed)) {
		t.Errorf("old form: %s", old.String())
	}
	if err := json.Unmarshal([]byte(`{"EventIDs":["zz"]}`), &old); err == nil {
		t.Error("a bad event id decoded without error")
	}
}
