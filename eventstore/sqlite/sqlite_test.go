package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/storetest"
	msqlite "modernc.org/sqlite"
)

// openTemp opens a store in a fresh temporary directory (through a parent
// folder that does not exist yet, as cmd/ledger does) and closes it when the
// test ends.
func openTemp(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger-data", "events.db")
	s, err := Open(path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) eventstore.Store {
			s, _ := openTemp(t)
			return s
		},
		Reopen: func(t *testing.T, old eventstore.Store) eventstore.Store {
			path := old.(*Store).path
			if err := old.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			s, err := Open(path)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			return s
		},
	})
}

// waitFor yields until cond holds: the writer goroutine is parked in a
// commit hook or the queue is being filled, states with no event to wait
// on. It fails the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		runtime.Gosched()
	}
}

// heldCommit is a commit hook that holds the writer in its nth commit
// until release is closed.
type heldCommit struct {
	nth     int32
	hooked  atomic.Int32 // commits that reached the hook
	release chan struct{}
}

func holdCommit(nth int32) *heldCommit {
	return &heldCommit{nth: nth, release: make(chan struct{})}
}

func (h *heldCommit) hook() error {
	if h.hooked.Add(1) == h.nth {
		<-h.release
	}
	return nil
}

// wait returns once the writer is held in the hook.
func (h *heldCommit) wait(t testing.TB) {
	t.Helper()
	waitFor(t, fmt.Sprintf("commit %d in the hook", h.nth), func() bool { return h.hooked.Load() >= h.nth })
}

// notification returns an event shaped like a payment notification, with a
// fresh random ID.
func notification(n int) eventstore.EventData {
	id := eventstore.EventID(uuid.New())
	return eventstore.EventData{
		ID:          id,
		Type:        "PaymentConfirmed",
		ContentType: "application/json",
		Data: fmt.Appendf(nil, `{"merchant_id":"1900000109","out_trade_no":"ORDER-%08d","transaction_id":"4200001234%010d",`+
			`"amount_fen":%d,"currency":"CNY","paid_at":"2024-06-01T12:00:00+08:00","payer":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}`, n, n, 100+n%1000),
		Metadata: []byte(`{"notify_id":"` + id.String() + `","api":"v3"}`),
	}
}

// TestGroupCommit holds the first commit in the commit hook until 63 other
// appends are queued, then checks that they all went into one transaction.
func TestGroupCommit(t *testing.T) {
	const clients = 64
	held := holdCommit(1)
	s, _ := openTemp(t, WithCommitHook(held.hook))
	ctx := t.Context()

	first := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "order-first", eventstore.NoStream(), notification(0))
		first <- err
	}()
	// Wait until the writer holds the first group in the hook, then queue
	// the others behind it.
	held.wait(t)
	errs := make(chan error, clients-1)
	for i := 1; i < clients; i++ {
		go func() {
			_, err := s.Append(ctx, fmt.Sprintf("order-%d", i), eventstore.NoStream(), notification(i))
			errs <- err
		}()
	}
	waitFor(t, "appends queued", func() bool { return len(s.reqs) == clients-1 })
	close(held.release)
	if err := <-first; err != nil {
		t.Fatalf("first append: %v", err)
	}
	for i := 1; i < clients; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	st := s.Stats()
	if st.Appends != clients || st.Events != clients || st.Commits != 2 {
		t.Fatalf("stats %+v, want %d appends and events in 2 commits", st, clients)
	}
}

// TestGroupCommitUnderLoad checks that concurrent appends share commits
// without any help from a hook, and that the log stays dense.
func TestGroupCommitUnderLoad(t *testing.T) {
	const clients, each = 32, 20
	s, _ := openTemp(t)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			next := eventstore.NoStream()
			for i := range each {
				res, err := s.Append(t.Context(), fmt.Sprintf("order-%d", c), next, notification(c*each+i))
				if err != nil {
					errs <- err
					return
				}
				next = eventstore.Exact(res.NextExpected)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("%d appends in %d commits", st.Appends, st.Commits)
	if st.Appends != clients*each || st.Commits >= st.Appends {
		t.Fatalf("stats %+v: want %d appends in fewer commits", st, clients*each)
	}
	all, err := s.ReadAll(t.Context(), eventstore.Start, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range all {
		if e.Position.Commit != uint64(i+1) {
			t.Fatalf("event %d at position %v", i, e.Position)
		}
	}
}

// TestGroupIsolation: in one group, a request that fails (wrong revision,
// conflict) does not affect the others, and later requests see earlier
// ones of the same group.
func TestGroupIsolation(t *testing.T) {
	held := holdCommit(2)
	s, _ := openTemp(t, WithCommitHook(held.hook))
	ctx := t.Context()
	taken := notification(0)
	if _, err := s.Append(ctx, "order-taken", eventstore.NoStream(), taken); err != nil {
		t.Fatal(err)
	}
	// The next append is held in the hook; the rest form one group.
	hold := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "order-hold", eventstore.NoStream(), notification(1))
		hold <- err
	}()
	held.wait(t)
	type call struct {
		stream string
		exp    eventstore.ExpectedRevision
		ev     eventstore.EventData
		want   error
	}
	a, b := notification(2), notification(3)
	calls := []call{
		{"order-a", eventstore.NoStream(), a, nil},
		{"order-a", eventstore.NoStream(), notification(4), eventstore.ErrWrongExpectedRevision},
		{"order-a", eventstore.Exact(0), b, nil},
		{"order-other", eventstore.NoStream(), taken, eventstore.ErrEventIDConflict},
		{"order-a", eventstore.Exact(0), b, nil}, // duplicate of the third, same group
	}
	results := make([]chan error, len(calls))
	for i, c := range calls {
		results[i] = make(chan error, 1)
		// Queue in order: each goroutine is started after the previous
		// request is in the queue.
		n := len(s.reqs)
		go func() {
			_, err := s.Append(ctx, c.stream, c.exp, c.ev)
			results[i] <- err
		}()
		waitFor(t, "request queued", func() bool { return len(s.reqs) > n })
	}
	close(held.release)
	if err := <-hold; err != nil {
		t.Fatal(err)
	}
	for i, c := range calls {
		err := <-results[i]
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Fatalf("call %d: %v, want %v", i, err, c.want)
		}
	}
	got, err := s.ReadStream(ctx, "order-a", 0, 0)
	if err != nil || len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID {
		t.Fatalf("order-a = %v, %v; want a, b", got, err)
	}
	if st := s.Stats(); st.Commits != 3 || st.Duplicates != 1 || st.Events != 4 {
		t.Fatalf("stats %+v, want 3 commits, 1 duplicate, 4 events", st)
	}
}

// TestCommitFailure: when the store cannot commit, every append of the group
// fails with ErrUnavailable, nothing is half written, and once commits work
// again the store goes on at the right revisions and positions.
func TestCommitFailure(t *testing.T) {
	var failing atomic.Bool
	s, path := openTemp(t, WithCommitHook(func() error {
		if failing.Load() {
			return errors.New("disk full (test)")
		}
		return nil
	}))
	ctx := t.Context()
	e0 := notification(0)
	if _, err := s.Append(ctx, "order-1", eventstore.NoStream(), e0); err != nil {
		t.Fatal(err)
	}

	failing.Store(true)
	lost := []eventstore.EventData{notification(1), notification(2)}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			if i == 0 {
				_, errs[i] = s.Append(ctx, "order-1", eventstore.Exact(0), lost...)
				return
			}
			_, errs[i] = s.Append(ctx, fmt.Sprintf("order-x%d", i), eventstore.NoStream(), notification(10+i))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Fatalf("append %d during failure: %v, want ErrUnavailable", i, err)
		}
	}
	t.Logf("error during failure: %v", errs[0])
	all, err := s.ReadAll(ctx, eventstore.Start, 100)
	if err != nil || len(all) != 1 {
		t.Fatalf("log after failed commits: %d events, %v; want 1", len(all), err)
	}
	if st := s.Stats(); st.FailedCommits == 0 {
		t.Fatalf("stats %+v: no failed commit counted", st)
	}

	failing.Store(false)
	// The retry with the same IDs is a new write, not a duplicate.
	res, err := s.Append(ctx, "order-1", eventstore.Exact(0), lost...)
	if err != nil || res.Duplicate || res.NextExpected != 2 || res.Position.Commit != 3 {
		t.Fatalf("retry after failure = %+v, %v; want revision 2 at position 3", res, err)
	}
	res, err = s.Append(ctx, "order-x1", eventstore.NoStream(), notification(99))
	if err != nil || res.NextExpected != 0 || res.Position.Commit != 4 {
		t.Fatalf("append after failure = %+v, %v; want revision 0 at position 4", res, err)
	}

	// And the file agrees after a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	all, err = s2.ReadAll(ctx, eventstore.Start, 100)
	if err != nil || len(all) != 4 {
		t.Fatalf("log after reopen: %d events, %v; want 4", len(all), err)
	}
}

// TestCloseDrainsInFlight: appends already queued when Close is called are
// committed and acknowledged; appends after it fail with ErrClosed.
func TestCloseDrainsInFlight(t *testing.T) {
	held := holdCommit(1)
	s, path := openTemp(t, WithCommitHook(held.hook))
	const queued = 8
	errs := make(chan error, queued+1)
	appendTo := func(i int) {
		_, err := s.Append(context.Background(), fmt.Sprintf("order-%d", i), eventstore.NoStream(), notification(i))
		errs <- err
	}
	go appendTo(0)
	held.wait(t)
	for i := 1; i <= queued; i++ {
		go appendTo(i)
	}
	waitFor(t, "appends queued", func() bool { return len(s.reqs) == queued })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	waitFor(t, "store closed", func() bool {
		s.closeMu.RLock()
		defer s.closeMu.RUnlock()
		return s.closed
	})
	_, err := s.Append(context.Background(), "order-late", eventstore.NoStream(), notification(99))
	if !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("append after Close: %v, want ErrClosed", err)
	}
	close(held.release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range queued + 1 {
		if err := <-errs; err != nil {
			t.Fatalf("queued append: %v", err)
		}
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	all, err := s2.ReadAll(t.Context(), eventstore.Start, 100)
	if err != nil || len(all) != queued+1 {
		t.Fatalf("after reopen: %d events, %v; want %d", len(all), err, queued+1)
	}
}

// TestCloseRace: appends racing with Close either succeed, and are then
// durable, or fail with ErrClosed.
func TestCloseRace(t *testing.T) {
	s, path := openTemp(t)
	const clients = 32
	type outcome struct {
		stream string
		err    error
	}
	out := make(chan outcome, clients)
	start := make(chan struct{})
	for i := range clients {
		go func() {
			<-start
			stream := fmt.Sprintf("order-%d", i)
			_, err := s.Append(context.Background(), stream, eventstore.NoStream(), notification(i))
			out <- outcome{stream, err}
		}()
	}
	close(start)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	for range clients {
		o := <-out
		switch {
		case o.err == nil:
			acked = append(acked, o.stream)
		case !errors.Is(o.err, eventstore.ErrClosed):
			t.Fatalf("append racing Close: %v", o.err)
		}
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	all, err := s2.ReadAll(t.Context(), eventstore.Start, 100)
	if err != nil || len(all) != len(acked) {
		t.Fatalf("after reopen: %d events, %v; %d were acknowledged", len(all), err, len(acked))
	}
	for _, stream := range acked {
		got, err := s2.ReadStream(t.Context(), stream, 0, 0)
		if err != nil || len(got) != 1 {
			t.Fatalf("acknowledged %s: %d events after reopen, %v", stream, len(got), err)
		}
	}
}

// TestCancelledAppend: a context that ends before the append is queued
// writes nothing and says so with ctx's error.
func TestCancelledAppend(t *testing.T) {
	s, _ := openTemp(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Append(ctx, "order-1", eventstore.NoStream(), notification(0))
	if !errors.Is(err, context.Canceled) || errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append with a cancelled context: %v", err)
	}
	if got, _ := s.ReadAll(t.Context(), eventstore.Start, 10); len(got) != 0 {
		t.Fatalf("cancelled append wrote %d events", len(got))
	}
}

// TestSchemaForAuditors reads the file with a plain SQLite connection, as an
// auditor's tool would, and checks that events cannot be changed.
func TestSchemaForAuditors(t *testing.T) {
	s, path := openTemp(t)
	e := notification(7)
	bin := notification(8)
	bin.ContentType = "application/octet-stream"
	bin.Data = []byte{0xff, 0x00, 0x01}
	if _, err := s.Append(t.Context(), "order-7", eventstore.NoStream(), e, bin); err != nil {
		t.Fatal(err)
	}
	c, err := msqlite.NewConnector(path)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()

	var version int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil || version != schemaVersion {
		t.Fatalf("user_version = %d, %v", version, err)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	var (
		id, typ, dataType, data, recordedAt string
		binType                             string
		lastRev, lastPos                    int64
	)
	err = db.QueryRow(`SELECT event_id, event_type, typeof(data), data, recorded_at FROM events WHERE position = 1`).
		Scan(&id, &typ, &dataType, &data, &recordedAt)
	if err != nil {
		t.Fatal(err)
	}
	if id != e.ID.String() || typ != e.Type || dataType != "text" || data != string(e.Data) {
		t.Fatalf("row 1 = %s %s %s %s", id, typ, dataType, data)
	}
	if _, err := time.Parse(time.RFC3339Nano, recordedAt); err != nil || recordedAt[len(recordedAt)-1] != 'Z' {
		t.Fatalf("recorded_at %q: %v", recordedAt, err)
	}
	if err := db.QueryRow(`SELECT typeof(data) FROM events WHERE position = 2`).Scan(&binType); err != nil || binType != "blob" {
		t.Fatalf("binary data stored as %q, %v", binType, err)
	}
	if err := db.QueryRow(`SELECT last_revision, last_position FROM streams WHERE stream_id = 'order-7'`).Scan(&lastRev, &lastPos); err != nil || lastRev != 1 || lastPos != 2 {
		t.Fatalf("streams row = %d %d, %v", lastRev, lastPos, err)
	}
	if _, err := db.Exec(`UPDATE events SET data = '{}' WHERE position = 1`); err == nil {
		t.Fatal("UPDATE of an event succeeded")
	}
	if _, err := db.Exec(`DELETE FROM events WHERE position = 1`); err == nil {
		t.Fatal("DELETE of an event succeeded")
	}
}

// TestOpenRefusesNewerSchema: a file written by a newer program is not
// misread.
func TestOpenRefusesNewerSchema(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := msqlite.NewConnector(path)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("Open accepted schema version 99")
	}
}

// TestStreamNames: names that need escaping work, in appends and in the
// subscription prefix filter; names that are not UTF-8 are refused.
func TestStreamNames(t *testing.T) {
	s, _ := openTemp(t)
	ctx := t.Context()
	names := []string{`order-"quoted"`, "order-<&>", "order-商户", "order-\u0000"}
	for i, name := range names {
		if _, err := s.Append(ctx, name, eventstore.NoStream(), notification(i)); err != nil {
			t.Fatalf("Append(%q): %v", name, err)
		}
		// A second append must see the stream, or it would reuse revision 0.
		if _, err := s.Append(ctx, name, eventstore.Exact(0), notification(i)); err != nil {
			t.Fatalf("second Append(%q): %v", name, err)
		}
	}
	sub, err := s.Subscribe(ctx, eventstore.Start, eventstore.SubscribeOptions{StreamPrefix: "order-商"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	b, err := sub.Next(ctx)
	if err != nil || len(b.Events) != 2 || b.Events[0].StreamID != "order-商户" || b.Checkpoint.Commit != 8 {
		t.Fatalf("Next = %+v, %v; want the 2 events of order-商户, checkpoint 8", b, err)
	}
	_, err = s.Append(ctx, "order-\xff", eventstore.Any(), notification(9))
	if !errors.Is(err, eventstore.ErrInvalidArgument) {
		t.Fatalf("Append to a non-UTF-8 stream name: %v, want ErrInvalidArgument", err)
	}
}

func TestOpenInvalidPath(t *testing.T) {
	for _, p := range []string{"", ":memory:", "a?b.db", "file:x.db"} {
		if _, err := Open(p); !errors.Is(err, eventstore.ErrInvalidArgument) {
			t.Errorf("Open(%q): %v, want ErrInvalidArgument", p, err)
		}
	}
}

// runClients runs b.N operations spread over exactly `clients` goroutines
// (RunParallel would start a multiple of GOMAXPROCS) and reports the rate.
func runClients(b *testing.B, clients int, op func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkAppend appends one notification-sized event per call, each to a
// new stream (NoStream), from 1, 16 and 64 concurrent clients; nogroup is
// the same at 64 clients with group commit turned off.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name    string
		clients int
		opts    []Option
	}{
		{"clients=1", 1, nil},
		{"clients=16", 16, nil},
		{"clients=64", 64, nil},
		{"clients=64/nogroup", 64, []Option{WithMaxGroup(1)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, _ := openTemp(b, bc.opts...)
			events := make([]eventstore.EventData, b.N)
			for i := range events {
				events[i] = notification(i)
			}
			ctx := context.Background()
			runClients(b, bc.clients, func(i int) error {
				_, err := s.Append(ctx, fmt.Sprintf("order-%d", i), eventstore.NoStream(), events[i])
				return err
			})
			st := s.Stats()
			if st.Commits > 0 {
				b.ReportMetric(float64(st.Appends)/float64(st.Commits), "appends/commit")
			}
		})
	}
}

// BenchmarkAppendDuplicate re-appends already stored notifications (WeChat
// retrying a notification whose reply it missed) from 64 clients.
func BenchmarkAppendDuplicate(b *testing.B) {
	const stored = 1000
	s, _ := openTemp(b)
	ctx := context.Background()
	events := make([]eventstore.EventData, stored)
	for i := range events {
		events[i] = notification(i)
		if _, err := s.Append(ctx, fmt.Sprintf("order-%d", i), eventstore.NoStream(), events[i]); err != nil {
			b.Fatal(err)
		}
	}
	runClients(b, 64, func(i int) error {
		res, err := s.Append(ctx, fmt.Sprintf("order-%d", i%stored), eventstore.NoStream(), events[i%stored])
		if err == nil && !res.Duplicate {
			err = errors.New("not a duplicate")
		}
		return err
	})
}
