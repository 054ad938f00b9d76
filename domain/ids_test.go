package domain_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderledger/orderledger/domain"
)

func TestUUIDv5MatchesGoogleUUID(t *testing.T) {
	namespaces := map[string][16]byte{
		"ledger": domain.Namespace,
		"url":    uuid.NameSpaceURL,
		"dns":    uuid.NameSpaceDNS,
	}
	names := []string{
		"",
		"a",
		"https://orderledger.dev/events",
		"10000100\x1f42000038002026113035904109\x1fPaymentConfirmed",
		"支付测试 & = \x00 \xff",
		strings.Repeat("0123456789", 100),
	}
	for nsName, ns := range namespaces {
		for _, name := range names {
			got := domain.UUIDv5(ns, name)
			want := uuid.NewSHA1(uuid.UUID(ns), []byte(name))
			if got != want {
				t.Errorf("UUIDv5(%s, %q) = %s, uuid.NewSHA1 gives %s", nsName, name, uuid.UUID(got), want)
			}
			if u := uuid.UUID(got); u.Version() != 5 || u.Variant() != uuid.RFC4122 {
				t.Errorf("UUIDv5(%s, %q): version %d variant %v", nsName, name, u.Version(), u.Variant())
			}
		}
	}
	if u := uuid.UUID(domain.Namespace); u.Version() != 5 || u.Variant() != uuid.RFC4122 {
		t.Errorf("Namespace %s: version %d variant %v", u, u.Version(), u.Variant())
	}
}

// TestEventIDsAreStable pins the namespace and the derivation. These IDs
// were computed once (and cross-checked with Python's uuid.uuid5). If this
// test fails, do not update the constants: an ID that changes makes every
// retry of an already recorded notification after the upgrade look new,
// which books it twice.
func TestEventIDsAreStable(t *testing.T) {
	for _, tc := range []struct {
		e    domain.Event
		want string
	}{
		{
			domain.PaymentConfirmed{Payment: domain.Payment{MchID: "10000100", TransactionID: "42000038002026113035904109", TotalFee: 2990}},
			"4ea3ecb4-9e52-5185-ac58-de6b11cc1430",
		},
		{
			domain.RefundSucceeded{Refund: domain.Refund{MchID: "10000100", RefundID: "50000000382019052709732678859", RefundFee: 1}},
			"f35ef1a6-63ab-5646-bd9a-a7e9378768fb",
		},
	} {
		if got := uuid.UUID(domain.ID(tc.e)).String(); got != tc.want {
			t.Errorf("%s ID = %s, was %s", tc.e.EventType(), got, tc.want)
		}
	}
	if got := uuid.UUID(domain.Namespace).String(); got != "3b1f6a52-8e0c-5d41-9a77-2e6bc41095d3" {
		t.Errorf("Namespace = %s", got)
	}
}

// TestEventIDDerivation pins which fields identify each event type: only
// the fact, never the time received, the evidence or the amounts.
func TestEventIDDerivation(t *testing.T) {
	p := pay(tx1, fee)
	other := p
	other.Evidence.Body, other.Evidence.ReceivedAt, other.PaidAt, other.CashFee = "<xml>copy</xml>", now, now, 1
	r := refund("r1", domain.RefundStatusSuccess, 300)
	for _, tc := range []struct {
		name  string
		e     domain.Event
		parts []string
	}{
		{"OrderPlaced", placed, []string{mch, otn, "OrderPlaced"}},
		{"OrderPlaced at another time", placeCmd(func(p *domain.OrderPlaced) { p.PlacedAt = now }), []string{mch, otn, "OrderPlaced"}},
		{"OrderClosed", closeCmd(), []string{mch, otn, "OrderClosed"}},
		{"PaymentConfirmed", domain.PaymentConfirmed{Payment: p}, []string{mch, tx1, "PaymentConfirmed"}},
		{"PaymentConfirmed, another copy", domain.PaymentConfirmed{Payment: other}, []string{mch, tx1, "PaymentConfirmed"}},
		{"PaymentFailed", domain.PaymentFailed{Payment: payFail(tx1, "NOTENOUGH")}, []string{mch, otn, tx1, "NOTENOUGH", "PaymentFailed"}},
		{"PaymentFailed without transaction", domain.PaymentFailed{Payment: payFail("", "SYSTEMERROR")}, []string{mch, otn, "", "SYSTEMERROR", "PaymentFailed"}},
		{"payment anomaly", domain.AnomalyDetected{Code: domain.DuplicatePayment, MchID: mch, OutTradeNo: otn, TransactionID: tx2, DetectedAt: now}, []string{mch, otn, tx2, "AnomalyDetected", "DUPLICATE_PAYMENT"}},
		{"refund anomaly with transaction", domain.AnomalyDetected{Code: domain.UnknownOrder, MchID: mch, OutTradeNo: otn, TransactionID: tx1, RefundID: "r1"}, []string{mch, otn, tx1, "AnomalyDetected", "UNKNOWN_ORDER"}},
		{"refund anomaly without transaction", domain.AnomalyDetected{Code: domain.UnknownOrder, MchID: mch, OutTradeNo: otn, RefundID: "r1"}, []string{mch, otn, "r1", "AnomalyDetected", "UNKNOWN_ORDER"}},
		{"REFUND_EXCEEDS_PAID of a refund", domain.AnomalyDetected{Code: domain.RefundExceedsPaid, MchID: mch, OutTradeNo: otn, TransactionID: tx1, RefundID: "r1"}, []string{mch, otn, "r1", "AnomalyDetected", "REFUND_EXCEEDS_PAID"}},
		{"REFUND_EXCEEDS_PAID of a payment", domain.AnomalyDetected{Code: domain.RefundExceedsPaid, MchID: mch, OutTradeNo: otn, TransactionID: tx1}, []string{mch, otn, tx1, "AnomalyDetected", "REFUND_EXCEEDS_PAID"}},
		{"REFUND_OF_UNKNOWN_TRANSACTION", domain.AnomalyDetected{Code: domain.RefundOfUnknownTransaction, MchID: mch, OutTradeNo: otn, TransactionID: tx2, RefundID: "r1", DetectedAt: now}, []string{mch, otn, "r1", "AnomalyDetected", "REFUND_OF_UNKNOWN_TRANSACTION"}},
		{"RefundSucceeded", domain.RefundSucceeded{Refund: r}, []string{mch, "r1", "RefundSucceeded"}},
		{"RefundClosed", domain.RefundClosed{Refund: r}, []string{mch, "r1", "RefundClosed"}},
		{"RefundAbnormal", domain.RefundAbnormal{Refund: r}, []string{mch, "r1", "RefundAbnormal"}},
	} {
		if got, want := domain.ID(tc.e), domain.EventID(tc.parts...); got != want {
			t.Errorf("%s: ID %s, want EventID%q = %s", tc.name, uuid.UUID(got), tc.parts, uuid.UUID(want))
		}
	}
	if id := domain.ID(domain.UnknownEvent{Type: "Future", Data: []byte(`{}`)}); id != ([16]byte{}) {
		t.Errorf("UnknownEvent ID = %x, want zero (not recorded)", id)
	}
}

func TestEventIDsDiffer(t *testing.T) {
	r := refund("r1", domain.RefundStatusSuccess, 300)
	p := pay(tx1, fee)
	distinct := map[string]domain.Event{
		"placed":                 placed,
		"placed, other order":    placeCmd(func(p *domain.OrderPlaced) { p.OutTradeNo = "other" }),
		"placed, other merchant": placeCmd(func(p *domain.OrderPlaced) { p.MchID = "10000100" }),
		"closed":                 closeCmd(),
		"confirmed tx1":          domain.PaymentConfirmed{Payment: p},
		"confirmed tx2":          domain.PaymentConfirmed{Payment: pay(tx2, fee)},
		"failed tx1":             domain.PaymentFailed{Payment: payFail(tx1, "NOTENOUGH")},
		"failed tx1 other code":  domain.PaymentFailed{Payment: payFail(tx1, "SYSTEMERROR")},
		"duplicate tx1":          domain.AnomalyDetected{Code: domain.DuplicatePayment, MchID: mch, OutTradeNo: otn, TransactionID: tx1},
		"mismatch tx1":           domain.AnomalyDetected{Code: domain.AmountMismatch, MchID: mch, OutTradeNo: otn, TransactionID: tx1},
		"unknown tx1":            domain.AnomalyDetected{Code: domain.UnknownOrder, MchID: mch, OutTradeNo: otn, TransactionID: tx1},
		"exceeds tx1":            domain.AnomalyDetected{Code: domain.RefundExceedsPaid, MchID: mch, OutTradeNo: otn, TransactionID: tx1},
		"exceeds r1":             domain.AnomalyDetected{Code: domain.RefundExceedsPaid, MchID: mch, OutTradeNo: otn, RefundID: "r1"},
		"unknown tx refund r1":   domain.AnomalyDetected{Code: domain.RefundOfUnknownTransaction, MchID: mch, OutTradeNo: otn, TransactionID: tx2, RefundID: "r1"},
		"unknown tx refund r2":   domain.AnomalyDetected{Code: domain.RefundOfUnknownTransaction, MchID: mch, OutTradeNo: otn, TransactionID: tx2, RefundID: "r2"},
		"refund ok r1":           domain.RefundSucceeded{Refund: r},
		"refund ok r2":           domain.RefundSucceeded{Refund: refund("r2", domain.RefundStatusSuccess, 300)},
		"refund closed":          domain.RefundClosed{Refund: r},
		"refund abnormal":        domain.RefundAbnormal{Refund: r},
	}
	seen := map[[16]byte]string{}
	for name, e := range distinct {
		id := domain.ID(e)
		if prev, ok := seen[id]; ok {
			t.Errorf("%s and %s share ID %s", name, prev, uuid.UUID(id))
		}
		seen[id] = name
	}

	for _, pair := range [][2][]string{
		{{"a-b", "c"}, {"a", "b-c"}},
		{{"a_b", "c"}, {"a", "b_c"}},
		{{"ab", "c"}, {"a", "bc"}},
		{{"a", ""}, {"a"}},
		{{"", "a"}, {"a"}},
		{{"a", "b"}, {"b", "a"}},
		{{"1", "2", "PaymentConfirmed"}, {"1", "2", "RefundSucceeded"}},
	} {
		if domain.EventID(pair[0]...) == domain.EventID(pair[1]...) {
			t.Errorf("EventID%q == EventID%q", pair[0], pair[1])
		}
	}
	if domain.EventID("a", "b") != domain.EventID("a", "b") {
		t.Error("EventID is not deterministic")
	}
}
