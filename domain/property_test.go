package domain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/orderledger/orderledger/domain"
)

// The pool of everything that can happen to the fixture order. Each
// transaction and each (refund, status) has one content, as with WeChat.
var (
	cmdPool = []any{placed, closeCmd()}
	// notePool: payments of tx1 and tx2 (both the right amount: the second
	// to arrive is a duplicate payment), tx3 (wrong amount), tx4 (wrong
	// appid), two failures, and refunds of tx1, tx2 and tx3 through their
	// life (ABNORMAL then SUCCESS or CLOSED), and of a transaction whose
	// payment notice never arrives.
	notePool = []any{
		pay(tx1, fee),
		pay(tx2, fee),
		pay(tx3, 1),
		pay("4200000001202611300000000004", fee, func(p *domain.Payment) { p.AppID = "wxother" }),
		payFail(tx1, "NOTENOUGH"),
		payFail("", "SYSTEMERROR"),
		refund("r1", domain.RefundStatusAbnormal, 300),
		refund("r1", domain.RefundStatusSuccess, 300),
		refund("r2", domain.RefundStatusSuccess, 700),
		refund("r3", domain.RefundStatusSuccess, 200),
		refund("r4", domain.RefundStatusAbnormal, 100),
		refund("r4", domain.RefundStatusClosed, 100),
		refund("r5", domain.RefundStatusSuccess, fee, ofTx(tx2)),
		refund("r6", domain.RefundStatusSuccess, 1, ofTx(tx3)),
		refund("r7", domain.RefundStatusSuccess, 50, ofTx("4200000001202611300000000005")),
	}
)

// run decides and evolves each step in turn. With roundTrip the state goes
// through JSON (as a projection stores it) and Clone before every step.
func run(t *testing.T, steps []any, roundTrip bool) (domain.Order, []domain.Event, []error) {
	t.Helper()
	var o domain.Order
	var all []domain.Event
	errs := make([]error, len(steps))
	for i, s := range steps {
		if roundTrip {
			b, err := json.Marshal(o)
			mustNoErr(t, err)
			var back domain.Order
			mustNoErr(t, json.Unmarshal(b, &back))
			o = back.Clone()
		}
		var events []domain.Event
		o, events, errs[i] = apply(o, s)
		all = append(all, events...)
	}
	return o, all, errs
}

// randomRun is a random history: a random subset of the pools in random
// order, the commands at most once, and notifications delivered again
// (copies inserted anywhere after the first). It returns the steps with
// the copies and the steps without them.
func randomRun(r *rand.Rand, withCommands bool, pool []any) (steps, firsts []any) {
	var idx []int
	all := slices.Clone(pool)
	if withCommands {
		all = append(all, cmdPool...)
	}
	for i := range all {
		if r.IntN(5) != 0 {
			idx = append(idx, i)
		}
	}
	r.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	for _, i := range idx {
		firsts = append(firsts, all[i])
	}
	seq := slices.Clone(idx)
	for range r.IntN(3 * (len(idx) + 1)) {
		k := r.IntN(len(seq) + 1)
		if k == 0 || len(seq) == 0 {
			continue
		}
		if i := seq[r.IntN(k)]; i < len(pool) { // a notification already delivered
			seq = slices.Insert(seq, k, i)
		}
	}
	for _, i := range seq {
		steps = append(steps, all[i])
	}
	return steps, firsts
}

// checkInvariants: what finance expects of any history.
func checkInvariants(t *testing.T, o domain.Order, events []domain.Event, steps []any) {
	t.Helper()
	ids := map[[16]byte]bool{}
	confirmed := 0
	for _, e := range events {
		id := domain.ID(e)
		if ids[id] {
			t.Errorf("event ID repeated in the stream: %s", describe(e))
		}
		ids[id] = true
		if _, ok := e.(domain.PaymentConfirmed); ok {
			confirmed++
		}
	}
	if confirmed > 1 {
		t.Errorf("%d PaymentConfirmed in one stream", confirmed)
	}
	if (o.Payment != nil) != (confirmed == 1) || o.Events != len(events) {
		t.Errorf("payment %v after %d PaymentConfirmed, %d events", o.Payment != nil, confirmed, o.Events)
	}
	// Nothing lost: every successful payment is recorded under its
	// transaction, every refund under its id.
	for _, s := range steps {
		switch v := s.(type) {
		case domain.Payment:
			if _, ok := o.Transactions[v.TransactionID]; v.ResultCode == "SUCCESS" && !ok {
				t.Errorf("payment %s not recorded", v.TransactionID)
			}
		case domain.Refund:
			if o.Refunds[v.RefundID] == nil {
				t.Errorf("refund %s not recorded", v.RefundID)
			}
		}
	}
	// Nothing counted twice: refunded_fee is the succeeded refunds of the
	// order's own payment (or, unpaid, of transactions not seen yet).
	var refunded int64
	for _, r := range o.Refunds {
		if r.Status != domain.RefundStatusSuccess {
			continue
		}
		_, seen := o.Transactions[r.TransactionID]
		if (o.Payment != nil && r.TransactionID == o.Payment.TransactionID) || (o.Payment == nil && !seen) {
			refunded += r.RefundFee
		}
	}
	if refunded != o.RefundedFee {
		t.Errorf("refunded_fee = %d, refunds of the order's payment add up to %d", o.RefundedFee, refunded)
	}
	if o.Payment != nil && o.PaidFee != o.Payment.TotalFee {
		t.Errorf("paid_fee %d, payment %d", o.PaidFee, o.Payment.TotalFee)
	}
	exceeds := o.Payment != nil && o.RefundedFee > o.PaidFee
	if flagged := slices.ContainsFunc(o.Anomalies, func(a domain.AnomalyRecord) bool { return a.Code == domain.RefundExceedsPaid }); flagged != exceeds {
		t.Errorf("REFUND_EXCEEDS_PAID flagged=%v, refunds %d > paid %d is %v", flagged, o.RefundedFee, o.PaidFee, exceeds)
	}
	// REFUND_OF_UNKNOWN_TRANSACTION: exactly the refunds that succeeded
	// while the order was paid, naming a transaction it had not seen; one
	// each, never counted, and their transaction never becomes the
	// order's payment.
	var prefix domain.Order
	for _, e := range events {
		if rs, ok := e.(domain.RefundSucceeded); ok {
			tx := rs.TransactionID
			if rec := prefix.Refunds[rs.RefundID]; rec != nil && rec.TransactionID != "" {
				tx = rec.TransactionID
			}
			_, seen := prefix.Transactions[tx]
			want := 0
			if prefix.Payment != nil && tx != "" && !seen {
				want = 1
			}
			got := 0
			for _, a := range o.Anomalies {
				if a.Code == domain.RefundOfUnknownTransaction && a.RefundID == rs.RefundID {
					got++
					if a.TransactionID != tx || a.NotifiedFee != rs.RefundFee {
						t.Errorf("%s of refund %s: tx %s notified %d, want tx %s notified %d",
							a.Code, rs.RefundID, a.TransactionID, a.NotifiedFee, tx, rs.RefundFee)
					}
				}
			}
			if got != want {
				t.Errorf("refund %s of %s (paid %v, seen %v): %d REFUND_OF_UNKNOWN_TRANSACTION, want %d",
					rs.RefundID, tx, prefix.Payment != nil, seen, got, want)
			}
		}
		prefix = domain.Evolve(prefix, e)
	}
	for _, a := range o.Anomalies {
		if a.Code != domain.RefundOfUnknownTransaction {
			continue
		}
		if r := o.Refunds[a.RefundID]; r == nil || r.Status != domain.RefundStatusSuccess || r.TransactionID != a.TransactionID {
			t.Errorf("%s of refund %s: refund %+v", a.Code, a.RefundID, r)
		}
		if o.Payment == nil || a.TransactionID == o.Payment.TransactionID || o.Transactions[a.TransactionID] == domain.TypePaymentConfirmed {
			t.Errorf("%s of transaction %s, which is the order's payment", a.Code, a.TransactionID)
		}
	}
	switch st := o.Status(); {
	case o.Payment != nil && st != domain.StatusPaid && st != domain.StatusPartiallyRefunded && st != domain.StatusRefunded:
		t.Errorf("paid order has status %s", st)
	case o.Payment == nil && o.Closed != nil && st != domain.StatusClosed:
		t.Errorf("closed unpaid order has status %s", st)
	}
}

func summary(o domain.Order) string {
	return fmt.Sprintf("%s paid=%d refunded=%d", o.Status(), o.PaidFee, o.RefundedFee)
}

// TestPropertyIdempotent: for random histories with repeated and reordered
// notifications, re-applying every notification (and every command that
// succeeded) afterwards decides no events; the history with copies records
// exactly the events of the history without them; a state kept as JSON
// between steps decides the same; and the invariants hold.
func TestPropertyIdempotent(t *testing.T) {
	runs := uint64(1000)
	if testing.Short() {
		runs = 100
	}
	for seed := range runs {
		r := rand.New(rand.NewPCG(seed, 0x6f72646572))
		steps, firsts := randomRun(r, seed%4 != 0, notePool)
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			o, events, errs := run(t, steps, false)
			for i, err := range errs {
				if err != nil && !errors.Is(err, domain.ErrNotClosable) && !errors.Is(err, domain.ErrUnknownOrder) {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			checkInvariants(t, o, events, steps)

			// Everything again, in another order: nothing new.
			for _, i := range r.Perm(len(steps)) {
				if errs[i] != nil {
					continue // a command that failed may succeed now
				}
				again, err := decide(o, steps[i])
				if err != nil || len(again) != 0 {
					t.Errorf("re-applying %T: %v %v (state %s)", steps[i], describeAll(again), err, summary(o))
				}
			}

			// Copies change nothing.
			o2, events2, _ := run(t, firsts, false)
			if !slices.Equal(eventIDs(events), eventIDs(events2)) {
				t.Errorf("with copies %q\nwithout     %q", describeAll(events), describeAll(events2))
			}
			if summary(o) != summary(o2) {
				t.Errorf("with copies %s, without %s", summary(o), summary(o2))
			}

			// A state restored from JSON before every step decides the same.
			if seed%4 != 0 {
				return
			}
			o3, events3, _ := run(t, steps, true)
			if !slices.Equal(eventIDs(events), eventIDs(events3)) {
				t.Errorf("via JSON %q\ndirect   %q", describeAll(events3), describeAll(events))
			}
			if summary(o) != summary(o3) {
				t.Errorf("via JSON %s, direct %s", summary(o3), summary(o))
			}
		})
		if t.Failed() {
			break
		}
	}
}

// TestPropertyOrderIndependent: for a placed order with one paying
// transaction and no close, the order in which notifications arrive
// (payment notices late, refunds first, failures and mismatches in
// between, copies anywhere) does not change the final status or totals.
// (For an order never placed, the first successful transaction to arrive
// is the payment, whatever its amount, so order matters there by design.)
func TestPropertyOrderIndependent(t *testing.T) {
	pool := slices.DeleteFunc(slices.Clone(notePool), func(s any) bool {
		p, ok := s.(domain.Payment)
		return ok && p.TransactionID == tx2 // the only other paying transaction
	})
	for seed := range uint64(500) {
		r := rand.New(rand.NewPCG(seed, 0x7065726d))
		_, firsts := randomRun(r, false, pool)
		o, _, _ := run(t, append([]any{placed}, firsts...), false)
		for k := range 5 {
			perm := slices.Clone(firsts)
			r.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			for range r.IntN(4) {
				if len(perm) > 0 {
					perm = slices.Insert(perm, r.IntN(len(perm)+1), perm[r.IntN(len(perm))])
				}
			}
			perm = append([]any{placed}, perm...)
			p, events, _ := run(t, perm, false)
			checkInvariants(t, p, events, perm)
			if summary(p) != summary(o) {
				t.Fatalf("seed %d permutation %d: %s, in first order %s", seed, k, summary(p), summary(o))
			}
		}
	}
}
