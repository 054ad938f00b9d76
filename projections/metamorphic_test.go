package projections

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

// The metamorphic test (pebble's idea, small): a random history over many
// orders, written through the real domain decisions, is projected
// incrementally — random chunk sizes, random batch sizes, runner restarts
// and read model reopenings from the checkpoint, lost feeds, and batches
// delivered again — and the final tables must equal, byte for byte, a
// Rebuild from zero. Both are also checked against an oracle computed from
// domain.Fold, so a bug shared by both paths is caught too.

func TestMetamorphicIncrementalEqualsRebuild(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	steps := 500
	if testing.Short() {
		seeds, steps = seeds[:1], 200
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			res := runMetamorphic(t, seed, steps, false)
			if res.incremental != res.rebuilt {
				t.Fatalf("incremental build differs from rebuild (seed %d): %s", seed, diffLines(res.incremental, res.rebuilt))
			}
			// The test must not be vacuous.
			if res.redelivered == 0 || res.unavailable == 0 || res.restarts == 0 || res.orders < 50 || res.cacheHits == 0 {
				t.Errorf("too little chaos: %+v", res.metaStats)
			}
			t.Logf("%+v", res.metaStats)
		})
	}
}

// TestMetamorphicCatchesDoubleApplication runs the same procedure with the
// idempotency guards switched off: re-delivered batches are then applied a
// second time, and the comparison must notice.
func TestMetamorphicCatchesDoubleApplication(t *testing.T) {
	res := runMetamorphic(t, 7, 200, true)
	if res.redelivered == 0 {
		t.Fatal("no batch was delivered twice; the test proves nothing")
	}
	if res.incremental == res.rebuilt {
		t.Fatal("double application went unnoticed: the metamorphic comparison cannot fail")
	}
	t.Logf("as expected, %s", diffLines(res.incremental, res.rebuilt))
}

type metaStats struct {
	orders, events, restarts, reopens, redelivered, unavailable, cacheHits int
	maxSleep                                                               time.Duration
}

type metaResult struct {
	incremental, rebuilt string
	metaStats
}

const (
	metaBackoffMin = 5 * time.Millisecond
	metaBackoffMax = 40 * time.Millisecond
)

func runMetamorphic(t *testing.T, seed uint64, steps int, noGuards bool) metaResult {
	ctx := context.Background()
	dir := t.TempDir()
	clock := newClock(time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC))
	mem := newMemStore(clock.Now)
	chaos := newChaosStore(mem, seed, 0.05, 0.15)
	gen := newHistory(mem, clock, seed)
	rng := rand.New(rand.NewPCG(seed, 3)) // restarts and batch sizes

	var stats metaStats
	var sleepMu sync.Mutex
	sleep := func(ctx context.Context, d time.Duration) error {
		sleepMu.Lock()
		stats.maxSleep = max(stats.maxSleep, d)
		sleepMu.Unlock()
		return ctx.Err()
	}

	path := filepath.Join(dir, "incremental.db")
	budgets := rand.New(rand.NewPCG(seed, 5)) // state cache sizes
	var hits []*int
	open := func() *ReadModel {
		rm, err := OpenReadModel(path)
		if err != nil {
			t.Fatal(err)
		}
		rm.now, rm.noGuards = clock.Now, noGuards
		// No state cache, one that evicts all the time, or the default;
		// every row taken from it is checked against the file.
		rm.cache = newStateCache([]int{0, 4 << 10, defaultCacheBudget, defaultCacheBudget}[budgets.IntN(4)])
		hits = append(hits, checkCacheHits(rm))
		return rm
	}
	rm := open()
	start := func() *runner {
		return startRunner(chaos, rm, WithMaxBatch(1+rng.IntN(40)), WithBackoff(metaBackoffMin, metaBackoffMax), WithSleep(sleep))
	}
	stop := func(r *runner) {
		if err := r.stop(); err != nil {
			t.Fatalf("runner: %v", err)
		}
	}
	r := start()
	for done := 0; done < steps; {
		chunk := 1 + gen.rng.IntN(30)
		for range chunk {
			gen.step(t)
		}
		done += chunk
		// Besides the random chaos, some that does not depend on timing.
		chaos.mu.Lock()
		chaos.redeliverNext += rng.IntN(2)
		chaos.failSubscribe += rng.IntN(2)
		chaos.mu.Unlock()
		switch rng.IntN(6) {
		case 0: // restart from the checkpoint
			stop(r)
			stats.restarts++
			r = start()
		case 1: // restart and reopen the file
			stop(r)
			if err := rm.Close(); err != nil {
				t.Fatal(err)
			}
			stats.restarts++
			stats.reopens++
			rm = open()
			r = start()
		case 2, 3:
			r.waitFor(t, mem.end())
		}
	}
	r.waitFor(t, mem.end())
	stop(r)
	if cp, err := rm.Checkpoint(ctx); err != nil || cp != mem.end() {
		t.Fatalf("checkpoint %s (%v), want the end of the log %s", cp, err, mem.end())
	}
	incremental := dump(t, rm)
	if !noGuards {
		checkOracle(t, mem, rm)
	}
	rm.Close()

	rebuiltPath := filepath.Join(dir, "rebuilt.db")
	if err := Rebuild(ctx, mem, rebuiltPath); err != nil {
		t.Fatal(err)
	}
	rb, err := OpenReadModel(rebuiltPath)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	rebuilt := dump(t, rb)

	for _, h := range hits {
		stats.cacheHits += *h
	}
	stats.orders = len(gen.orders)
	stats.events = len(mem.log)
	stats.redelivered, stats.unavailable = chaos.counts()
	if stats.maxSleep > metaBackoffMax {
		t.Errorf("backoff %s exceeds its bound %s", stats.maxSleep, metaBackoffMax)
	}
	return metaResult{incremental, rebuilt, stats}
}

// checkOracle compares the read model with what domain.Fold says about
// every order stream, and the daily totals with sums computed from the
// folded states (not from the apply path's state transitions).
func checkOracle(t *testing.T, mem *memStore, rm *ReadModel) {
	t.Helper()
	ctx := context.Background()
	mem.mu.Lock()
	streams := make([]string, 0, len(mem.streams))
	for s := range mem.streams {
		streams = append(streams, s)
	}
	mem.mu.Unlock()
	slices.Sort(streams)

	type acc = map[string]*DailyTotal
	totals := map[string]acc{} // mch -> day -> total
	day := func(mch string, at time.Time) *DailyTotal {
		if totals[mch] == nil {
			totals[mch] = acc{}
		}
		d := Day(at)
		if totals[mch][d] == nil {
			totals[mch][d] = &DailyTotal{Day: d, Anomalies: map[string]int64{}}
		}
		return totals[mch][d]
	}
	for _, s := range streams {
		mch, otn, ok := domain.ParseStreamID(s)
		if !ok {
			continue
		}
		recs, err := mem.ReadStream(ctx, s, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		events := make([]domain.Event, len(recs))
		for i, rec := range recs {
			if events[i], err = domain.Unmarshal(rec.Type, rec.Data); err != nil {
				t.Fatal(err)
			}
		}
		o := domain.Fold(events)
		last := recs[len(recs)-1]
		got, ok, err := rm.Order(ctx, mch, otn)
		if err != nil || !ok {
			t.Fatalf("order %s: ok=%v err=%v", s, ok, err)
		}
		jsonEqual(t, "view of "+s, got, string(mustJSON(t, viewOf(mch, otn, &o, last.Revision, last.Position))))

		// Daily totals from the final state. A fact without its own time
		// counts on the recorded_at of the first event that matches.
		factDay := func(at time.Time, match func(domain.Event) bool) *DailyTotal {
			if !at.IsZero() {
				return day(mch, at)
			}
			for i, e := range events {
				if match(e) {
					return day(mch, recs[i].RecordedAt)
				}
			}
			t.Fatalf("%s: no matching event", s)
			return nil
		}
		if o.Placed != nil {
			day(mch, o.Placed.PlacedAt).OrdersPlaced++
		}
		if p := o.Payment; p != nil {
			d := factDay(p.PaidAt, func(e domain.Event) bool {
				c, ok := e.(domain.PaymentConfirmed)
				return ok && c.TransactionID == p.TransactionID
			})
			d.Payments++
			d.PaymentsFee += o.PaidFee
			d.CashFee += o.CashFee
			d.NetFee += o.PaidFee
		}
		for _, rf := range o.Refunds {
			if rf.Status != domain.RefundStatusSuccess {
				continue
			}
			d := factDay(rf.SucceededAt, func(e domain.Event) bool {
				r, ok := e.(domain.RefundSucceeded)
				return ok && r.RefundID == rf.RefundID
			})
			d.Refunds++
			d.RefundsFee += rf.RefundFee
			d.NetFee -= rf.RefundFee
		}
		for i, e := range events {
			a, ok := e.(domain.AnomalyDetected)
			if !ok {
				continue
			}
			d := day(mch, recs[i].RecordedAt)
			d.Anomalies[a.Code]++
			// The money the anomaly notified, from the event itself. When it
			// records a payment (a duplicate, mismatched, after-close or
			// unknown order's transaction), that is the money that arrived:
			// the payment's own total_fee, not the order's amount.
			if a.Payment != nil && a.NotifiedFee != a.Payment.TotalFee {
				t.Errorf("%s: %s anomaly of transaction %s notified %d fen, its payment's total_fee is %d",
					s, a.Code, a.TransactionID, a.NotifiedFee, a.Payment.TotalFee)
			}
			if d.AnomalyFees == nil {
				d.AnomalyFees = map[string]int64{}
			}
			d.AnomalyFees[a.Code] += a.NotifiedFee
		}
	}
	for mch, days := range totals {
		var want []DailyTotal
		for _, d := range slices.Sorted(maps.Keys(days)) {
			want = append(want, *days[d])
		}
		got, err := rm.DailyTotals(ctx, mch, time.Date(2000, 1, 1, 0, 0, 0, 0, domain.Beijing), time.Date(2100, 1, 1, 0, 0, 0, 0, domain.Beijing))
		if err != nil {
			t.Fatal(err)
		}
		jsonEqual(t, "daily totals of "+mch, got, string(mustJSON(t, want)))
	}
}

// history writes a random but realistic history: every order event comes
// from the domain's Decide functions, as in production.
type history struct {
	rng    *rand.Rand
	store  *memStore
	clock  *fakeClock
	orders []orderKey
	seq    int
	fees   map[string]int64 // refund id -> refund fee
}

var metaMerchants = []string{"1900000109", "1900000200"}

func newHistory(s *memStore, clock *fakeClock, seed uint64) *history {
	return &history{rng: rand.New(rand.NewPCG(seed, 2)), store: s, clock: clock, fees: map[string]int64{}}
}

func (h *history) next() string { h.seq++; return fmt.Sprintf("%07d", h.seq) }

func (h *history) randomID() eventstore.EventID {
	var id eventstore.EventID
	for i := range id {
		id[i] = byte(h.rng.IntN(256))
	}
	return id
}

func (h *history) maybeZero(t time.Time, p float64) time.Time {
	if h.rng.Float64() < p {
		return time.Time{}
	}
	return t.In(domain.Beijing)
}

func (h *history) step(t *testing.T) {
	h.clock.Advance(time.Duration(h.rng.IntN(150)) * time.Minute)
	now := h.clock.Now()
	switch r := h.rng.IntN(100); {
	case r < 18 || len(h.orders) == 0: // a new order
		k := orderKey{metaMerchants[h.rng.IntN(len(metaMerchants))], "T" + h.next()}
		cmd := domain.OrderPlaced{MchID: k.mchID, AppID: testAppID, OutTradeNo: k.outTradeNo,
			TotalFee: 1 + h.rng.Int64N(50000), FeeType: "CNY", Description: "item " + k.outTradeNo,
			PlacedAt: now.Add(-time.Duration(h.rng.IntN(600)) * time.Second).In(domain.Beijing)}
		events, err := domain.DecidePlace(domain.Order{}, cmd)
		if err != nil {
			t.Fatal(err)
		}
		h.orders = append(h.orders, k)
		h.write(t, k, eventstore.NoStream(), events)
	case r < 22: // money for an order never placed here
		k := orderKey{metaMerchants[h.rng.IntN(len(metaMerchants))], "U" + h.next()}
		h.orders = append(h.orders, k)
		h.write(t, k, eventstore.NoStream(), domain.DecidePayment(domain.Order{}, h.payment(k, 1+h.rng.Int64N(9000)), now))
	case r < 26: // another stream the projection must ignore
		if _, err := h.store.Append(context.Background(), "audit-"+h.next(), eventstore.Any(),
			eventstore.EventData{ID: h.randomID(), Type: "Note", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	case r < 28: // an event type this binary does not know, on an order stream
		k := h.orders[h.rng.IntN(len(h.orders))]
		if _, err := h.store.Append(context.Background(), domain.StreamID(k.mchID, k.outTradeNo), eventstore.Any(),
			eventstore.EventData{ID: h.randomID(), Type: "OrderNoteAdded", Data: []byte(`{"note":"from the future"}`)}); err != nil {
			t.Fatal(err)
		}
	default:
		k := h.orders[h.rng.IntN(len(h.orders))]
		o, recs := h.load(t, k)
		var events []domain.Event
		fee := o.TotalFee()
		switch h.rng.IntN(11) {
		case 0, 1, 2: // the expected payment (sometimes a retry of the first)
			p := h.payment(k, fee)
			if o.Payment != nil && h.rng.IntN(2) == 0 {
				p = *o.Payment
			}
			events = domain.DecidePayment(o, p, now)
		case 3: // a wrong amount
			events = domain.DecidePayment(o, h.payment(k, fee+1+h.rng.Int64N(100)), now)
		case 4: // another appid
			p := h.payment(k, fee)
			p.AppID = "wx0000000000000000"
			events = domain.DecidePayment(o, p, now)
		case 5, 6, 7: // a refund, new or an update of a known one
			var ref domain.Refund
			if len(o.RefundOrder) > 0 && h.rng.IntN(3) == 0 {
				id := o.RefundOrder[h.rng.IntN(len(o.RefundOrder))]
				ref = domain.Refund{RefundID: id, OutRefundNo: "R" + id, RefundFee: h.fees[id]}
			} else {
				id := "50" + h.next()
				h.fees[id] = 1 + h.rng.Int64N(max(fee, 1))
				ref = domain.Refund{RefundID: id, OutRefundNo: "R" + id, RefundFee: h.fees[id]}
			}
			ref.MchID, ref.OutTradeNo, ref.TotalFee = k.mchID, k.outTradeNo, fee
			if o.Payment != nil {
				ref.TransactionID = o.Payment.TransactionID
			}
			switch s := h.rng.IntN(20); {
			case s < 12:
				ref.Status = domain.RefundStatusSuccess
				ref.SucceededAt = h.maybeZero(now, 0.15)
			case s < 17:
				ref.Status = domain.RefundStatusAbnormal
			default:
				ref.Status = domain.RefundStatusClosed
			}
			events = domain.DecideRefund(o, ref, now)
		case 8:
			events, _ = domain.DecideClose(o, domain.OrderClosed{MchID: k.mchID, OutTradeNo: k.outTradeNo, ClosedAt: now.In(domain.Beijing)})
		case 9: // a failed payment
			p := h.payment(k, fee)
			p.ResultCode, p.ErrCode, p.TransactionID = "FAIL", "NOTENOUGH", ""
			events = domain.DecidePayment(o, p, now)
		case 10: // a second transaction
			events = domain.DecidePayment(o, h.payment(k, fee), now)
		}
		h.write(t, k, eventstore.After(recs), events)
	}
}

func (h *history) payment(k orderKey, fee int64) domain.Payment {
	coupon := h.rng.Int64N(fee/10 + 1)
	return domain.Payment{MchID: k.mchID, AppID: testAppID, OutTradeNo: k.outTradeNo,
		TransactionID: "42" + h.next(), TotalFee: fee, CashFee: fee - coupon, CouponFee: coupon,
		FeeType: "CNY", TradeType: "JSAPI", ResultCode: "SUCCESS",
		PaidAt:   h.maybeZero(h.clock.Now().Add(-time.Duration(h.rng.IntN(300))*time.Second), 0.05),
		Evidence: domain.Evidence{Channel: "wechatpay-v2-notify", Body: "<xml/>", ReceivedAt: h.clock.Now()}}
}

func (h *history) load(t *testing.T, k orderKey) (domain.Order, []eventstore.RecordedEvent) {
	recs, err := h.store.ReadStream(context.Background(), domain.StreamID(k.mchID, k.outTradeNo), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var o domain.Order
	for _, rec := range recs {
		e, err := domain.Unmarshal(rec.Type, rec.Data)
		if err != nil {
			t.Fatal(err)
		}
		o = domain.Evolve(o, e)
	}
	return o, recs
}

func (h *history) write(t *testing.T, k orderKey, expected eventstore.ExpectedRevision, events []domain.Event) {
	if len(events) == 0 {
		return // the decision was a no-op (a repeat)
	}
	if _, err := h.store.Append(context.Background(), domain.StreamID(k.mchID, k.outTradeNo), expected, eventData(t, events...)...); err != nil {
		t.Fatal(err)
	}
}

// chaosStore wraps a store so that subscriptions lose their feed
// (ErrUnavailable) and deliver old batches again (which a correct backend
// never does), at random.
type chaosStore struct {
	*memStore
	pUnavailable, pRedeliver float64

	// mu guards the fields below.
	mu            sync.Mutex
	rng           *rand.Rand
	failSubscribe int                // the next n Subscribe calls fail with ErrUnavailable
	redeliverNext int                // the next n Next calls deliver an old batch again
	delivered     []eventstore.Batch // every non-empty batch delivered so far
	redelivered   int
	unavailable   int
}

func newChaosStore(s *memStore, seed uint64, pUnavailable, pRedeliver float64) *chaosStore {
	return &chaosStore{memStore: s, rng: rand.New(rand.NewPCG(seed, 4)), pUnavailable: pUnavailable, pRedeliver: pRedeliver}
}

func (c *chaosStore) counts() (redelivered, unavailable int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.redelivered, c.unavailable
}

func (c *chaosStore) Subscribe(ctx context.Context, after eventstore.Position, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	c.mu.Lock()
	if c.failSubscribe > 0 {
		c.failSubscribe--
		c.unavailable++
		c.mu.Unlock()
		return nil, fmt.Errorf("subscribe: %w", eventstore.ErrUnavailable)
	}
	c.mu.Unlock()
	sub, err := c.memStore.Subscribe(ctx, after, opts)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(opts.StreamPrefix, domain.StreamPrefix) {
		return nil, fmt.Errorf("subscribed with prefix %q: %w", opts.StreamPrefix, eventstore.ErrInvalidArgument)
	}
	return &chaosSub{c: c, sub: sub}, nil
}

type chaosSub struct {
	c   *chaosStore
	sub eventstore.Subscription
}

func (s *chaosSub) Next(ctx context.Context) (eventstore.Batch, error) {
	c := s.c
	c.mu.Lock()
	roll := c.rng.Float64()
	switch {
	case roll < c.pUnavailable:
		c.unavailable++
		c.mu.Unlock()
		return eventstore.Batch{}, fmt.Errorf("next: %w", eventstore.ErrUnavailable)
	case (c.redeliverNext > 0 || roll < c.pUnavailable+c.pRedeliver) && len(c.delivered) > 0:
		c.redeliverNext = max(0, c.redeliverNext-1)
		b := c.delivered[c.rng.IntN(len(c.delivered))]
		c.redelivered++
		c.mu.Unlock()
		return eventstore.Batch{Events: slices.Clone(b.Events), Checkpoint: b.Checkpoint}, nil
	}
	c.mu.Unlock()
	b, err := s.sub.Next(ctx)
	if err == nil && len(b.Events) > 0 {
		c.mu.Lock()
		c.delivered = append(c.delivered, b)
		c.mu.Unlock()
	}
	return b, err
}

func (s *chaosSub) Close() error { return s.sub.Close() }
