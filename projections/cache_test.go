package projections

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

// checkCacheHits makes rm compare every row it takes from its state cache
// with the row in the file, in the batch's transaction: the cache must hold
// exactly the committed row (revision, state_json, the derived columns).
// It returns a counter of the hits checked.
func checkCacheHits(rm *ReadModel) *int {
	hits := new(int)
	rm.onCacheHit = func(ctx context.Context, tx *sql.Tx, cached *orderRow) error {
		*hits++
		stored, err := loadRow(ctx, tx.StmtContext(ctx, rm.stmts.loadRow), cached.key)
		if err != nil {
			return err
		}
		if !stored.exists || !cached.exists || stored.revision != cached.revision || stored.size != cached.size || cached.dirty {
			return fmt.Errorf("cached row %+v (exists %v, revision %d, size %d, dirty %v), stored exists %v, revision %d, size %d",
				cached.key, cached.exists, cached.revision, cached.size, cached.dirty, stored.exists, stored.revision, stored.size)
		}
		a, err1 := json.Marshal(cached.order)
		b, err2 := json.Marshal(stored.order)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("cached state of %+v differs from state_json:\n%s\n%s", cached.key, a, b)
		}
		va, _ := json.Marshal(viewOf(cached.key.mchID, cached.key.outTradeNo, &cached.order, cached.revision, eventstore.Start))
		vb, _ := json.Marshal(viewOf(cached.key.mchID, cached.key.outTradeNo, &stored.order, stored.revision, eventstore.Start))
		if !bytes.Equal(va, vb) {
			return fmt.Errorf("cached view of %+v differs:\n%s\n%s", cached.key, va, vb)
		}
		return nil
	}
	return hits
}

// encodeState skips json.Marshal's second pass over MarshalJSON's output;
// the bytes must be the same, or files written before and after would
// differ. Strings that the encoder escapes are the point.
func TestEncodeStateIsJSONMarshal(t *testing.T) {
	odd := []string{"", "<xml>&amp;</xml>", "\u2028\u2029", "a\x00b\x1f\"\\/", "bad \xff\xfe utf-8", "\U0001F600 微信支付", "\xed\xa0\x80 (a surrogate in UTF-8)"}
	expires := bj("2024-03-02 09:00:00")
	for i, s := range odd {
		p := placed("A"+s, 100, "2024-03-02 08:00:00")
		p.Description, p.OpenID, p.ExpiresAt = s, s, &expires
		pay := payment("A"+s, "42"+s, 100, 90, "2024-03-02 08:01:00")
		pay.Attach, pay.Evidence.Body = s, "<xml>"+s+"</xml>"
		pay.Evidence.Headers = map[string]string{"Wechatpay-Signature": s, s: "x"}
		dup := payment("A"+s, "49"+s, 100, 100, "2024-03-02 08:30:00")
		history := []domain.Event{
			p,
			domain.PaymentConfirmed{Payment: pay},
			anomaly(domain.DuplicatePayment, "A"+s, "49"+s, 0, 100, s, "2024-03-02 08:30:01", &dup),
			domain.RefundSucceeded{Refund: refund("A"+s, "42"+s, "50"+s, 30, domain.RefundStatusSuccess, "2024-03-02 10:00:00")},
			domain.UnknownEvent{Type: s, Data: json.RawMessage(`{}`)},
		}
		// As apply sees them: stored, then decoded.
		stored := make([]domain.Event, len(history))
		for j, e := range history {
			typ, data, err := domain.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			if stored[j], err = domain.Unmarshal(typ, data); err != nil {
				t.Fatal(err)
			}
		}
		for n := 0; n <= len(history); n++ {
			for _, events := range [][]domain.Event{history[:n], stored[:n]} {
				o := domain.Fold(events)
				want, err := json.Marshal(o)
				if err != nil {
					t.Fatal(err)
				}
				got, err := encodeState(&o)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("string %d, %d events: encodeState\n%s\njson.Marshal\n%s", i, n, got, want)
				}
				// decodeState reads it as json.Unmarshal does.
				var viaJSON, viaDecode domain.Order
				if err := json.Unmarshal(want, &viaJSON); err != nil {
					t.Fatal(err)
				}
				if err := decodeState(want, &viaDecode); err != nil {
					t.Fatal(err)
				}
				a, _ := json.Marshal(viaJSON)
				b, _ := json.Marshal(viaDecode)
				if !bytes.Equal(a, b) {
					t.Fatalf("string %d, %d events: decoded states differ:\n%s\n%s", i, n, a, b)
				}
			}
			// The cache keeps the state folded from decoded events where
			// the next batch would otherwise decode its state_json: both
			// must encode alike. (Folded from Go values with invalid UTF-8
			// they would not, but events always come decoded from JSON.)
			o := domain.Fold(stored[:n])
			a, _ := encodeState(&o)
			var back domain.Order
			if err := decodeState(a, &back); err != nil {
				t.Fatal(err)
			}
			b, _ := encodeState(&back)
			if !bytes.Equal(a, b) {
				t.Fatalf("string %d, %d events: the state is not stable through state_json:\n%s\n%s", i, n, a, b)
			}
		}
	}
	for _, bad := range []string{``, `{`, `{"Events":1}x`, `[]`, `{"EventIDs":["zz"]}`} {
		var a, b domain.Order
		errJSON := json.Unmarshal([]byte(bad), &a)
		errDecode := decodeState([]byte(bad), &b)
		if (errJSON == nil) != (errDecode == nil) || (errDecode != nil && !errors.Is(errDecode, ErrSchema)) {
			t.Errorf("state_json %q: json.Unmarshal %v, decodeState %v", bad, errJSON, errDecode)
		}
	}
}

func TestStateCacheLRU(t *testing.T) {
	row := func(otn string, size int, paid bool) *orderRow {
		r := &orderRow{key: orderKey{testMch, otn}, exists: true, size: size - entryOverhead, dirty: true}
		if paid {
			r.order.Payment = &domain.Payment{}
		}
		return r
	}
	keys := func(c *stateCache) string { // most recently used first
		var b []string
		for r := c.lru.next; r != &c.lru; r = r.next {
			b = append(b, r.key.outTradeNo)
		}
		return strings.Join(b, ",")
	}
	c := newStateCache(1000)
	c.put(row("a", 300, false))
	c.put(row("b", 300, false))
	c.put(row("p", 100, true)) // settled: cold end
	if got := keys(c); got != "b,a,p" || c.used != 700 {
		t.Fatalf("lru %s used %d", got, c.used)
	}
	if r := c.take(orderKey{testMch, "a"}); r == nil || r.dirty || c.used != 400 || keys(c) != "b,p" {
		t.Fatalf("take a: %v, used %d, lru %s", r, c.used, keys(c))
	} else {
		c.put(r)
	}
	if got := keys(c); got != "a,b,p" {
		t.Fatalf("lru %s", got)
	}
	c.put(row("c", 300, false)) // 1000: fits exactly
	if got := keys(c); got != "c,a,b,p" || c.used != 1000 {
		t.Fatalf("lru %s used %d", got, c.used)
	}
	c.put(row("d", 300, false)) // evicts p (settled, coldest) then b
	if got := keys(c); got != "d,c,a" || c.used != 900 || c.len() != 3 {
		t.Fatalf("lru %s used %d len %d", got, c.used, c.len())
	}
	if c.take(orderKey{testMch, "b"}) != nil || c.take(orderKey{testMch, "p"}) != nil {
		t.Fatal("evicted rows still cached")
	}
	c.put(row("huge", 1001, false)) // larger than the budget: not cached
	c.put(&orderRow{key: orderKey{testMch, "absent"}})
	if got := keys(c); got != "d,c,a" {
		t.Fatalf("lru %s", got)
	}
	c.clear()
	if c.len() != 0 || c.used != 0 || keys(c) != "" || c.take(orderKey{testMch, "d"}) != nil {
		t.Fatal("clear left entries")
	}
	off := newStateCache(0)
	off.put(row("a", 300, false))
	if off.len() != 0 {
		t.Fatal("a zero budget cached a row")
	}
}

// A batch that fails after it evolved cached rows leaves nothing of them in
// the cache: applying the batch again (on the same ReadModel, without
// reopening it) gives exactly what a ReadModel without a cache gives.
func TestCacheKeepsNoRolledBackState(t *testing.T) {
	ctx := context.Background()
	store := newMemStore(func() time.Time { return tableRecordedAt })
	appendTo(t, store, testMch, "A1", placed("A1", 100, "2024-03-02 08:00:00"))
	appendTo(t, store, testMch, "B2", placed("B2", 200, "2024-03-02 08:00:00"))
	appendTo(t, store, testMch, "C3", placed("C3", 300, "2024-03-02 08:00:00"), paid("C3", "4200000003", 300, 300, "2024-03-02 08:01:00"))
	first, err := store.ReadAll(ctx, eventstore.Start, 100)
	if err != nil {
		t.Fatal(err)
	}
	dup := payment("C3", "4200000009", 300, 300, "2024-03-02 09:00:00")
	appendTo(t, store, testMch, "A1", paid("A1", "4200000001", 100, 100, "2024-03-02 08:01:00"))
	appendTo(t, store, testMch, "B2", paid("B2", "4200000002", 200, 150, "2024-03-02 08:02:00"))
	appendTo(t, store, testMch, "C3", anomaly(domain.DuplicatePayment, "C3", "4200000009", 0, 300, "", "2024-03-02 09:00:01", &dup),
		domain.RefundSucceeded{Refund: refund("C3", "4200000003", "5000003", 30, domain.RefundStatusSuccess, "2024-03-02 10:00:00")})
	end := appendTo(t, store, testMch, "A1", domain.RefundSucceeded{Refund: refund("A1", "4200000001", "5000001", 100, domain.RefundStatusSuccess, "2024-03-02 10:00:00")})
	second, err := store.ReadAll(ctx, first[len(first)-1].Position, 100)
	if err != nil {
		t.Fatal(err)
	}

	// What the file must hold: the same batches on a ReadModel without cache.
	ref, _ := openTestRM(t)
	ref.cache = newStateCache(0)
	for _, b := range [][]eventstore.RecordedEvent{first, second} {
		if err := ref.apply(ctx, b, b[len(b)-1].Position); err != nil {
			t.Fatal(err)
		}
	}
	want := dump(t, ref)

	typ, data, err := domain.Marshal(placed("D4", 400, "2024-03-02 08:00:00"))
	if err != nil {
		t.Fatal(err)
	}
	gap := eventstore.RecordedEvent{StreamID: domain.StreamID(testMch, "D4"), Type: typ, Data: data,
		Revision: 1, Position: memPos(1000), RecordedAt: tableRecordedAt}
	undecodable := eventstore.RecordedEvent{StreamID: domain.StreamID(testMch, "B2"), Type: domain.TypeRefundSucceeded,
		Data: []byte(`{"refund_fee":"lots"}`), Revision: 2, Position: memPos(1000), RecordedAt: tableRecordedAt}

	for _, tc := range []struct {
		name    string
		batch   []eventstore.RecordedEvent // second, then something that fails
		hook    func() error
		wantErr error
	}{
		{"failed commit", second, func() error { return errInjected }, errInjected},
		{"inconsistent event after the cached rows evolved", slices.Concat(second, []eventstore.RecordedEvent{gap}), nil, ErrInconsistent},
		{"undecodable event after the cached rows evolved", slices.Concat(second, []eventstore.RecordedEvent{undecodable}), nil, ErrBadEvent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rm, _ := openTestRM(t)
			hits := checkCacheHits(rm)
			if err := rm.apply(ctx, first, first[len(first)-1].Position); err != nil {
				t.Fatal(err)
			}
			if rm.cache.len() != 3 {
				t.Fatalf("%d rows cached after the first batch, want 3", rm.cache.len())
			}
			before := dump(t, rm)

			rm.beforeCommit = tc.hook
			if err := rm.apply(ctx, tc.batch, tc.batch[len(tc.batch)-1].Position); !errors.Is(err, tc.wantErr) {
				t.Fatalf("apply = %v, want %v", err, tc.wantErr)
			}
			rm.beforeCommit = nil
			if *hits != 3 {
				t.Fatalf("the failed batch took %d rows from the cache, want 3 (the test would prove nothing)", *hits)
			}
			if rm.cache.len() != 0 {
				t.Fatalf("%d rows still cached after a rolled-back batch", rm.cache.len())
			}
			if got := dump(t, rm); got != before {
				t.Fatalf("the failed batch left traces: %s", diffLines(before, got))
			}

			// Once more, cache filled again from the file, then the batch.
			*hits = 0
			if err := rm.apply(ctx, second, end); err != nil {
				t.Fatal(err)
			}
			if got := dump(t, rm); got != want {
				t.Fatalf("after the retry: %s", diffLines(want, got))
			}
			// The cache now holds the committed rows: a batch that only
			// repeats events takes them, checks them and changes nothing.
			if rm.cache.len() != 3 {
				t.Fatalf("%d rows cached after the retry, want 3", rm.cache.len())
			}
			if _, err := rm.db.Exec(`DELETE FROM checkpoint`); err != nil {
				t.Fatal(err)
			}
			if err := rm.apply(ctx, slices.Concat(first, second), end); err != nil {
				t.Fatal(err)
			}
			if *hits != 3 {
				t.Fatalf("%d cache hits, want 3", *hits)
			}
			if got := dump(t, rm); got != want {
				t.Fatalf("repeated events changed the model: %s", diffLines(want, got))
			}
		})
	}
}
