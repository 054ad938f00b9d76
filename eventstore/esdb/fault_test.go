package esdb_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/esdb"
	"github.com/orderledger/orderledger/eventstore/esdb/internal/esdbtest"
)

// Fault tests: what a real cluster does to a client, reproduced by the
// esdbtest double through real gRPC (see README.md for what was checked
// against a real server: nothing so far).

func newEvent(t testing.TB, typ string) eventstore.EventData {
	t.Helper()
	var id eventstore.EventID
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return eventstore.EventData{
		ID:          id,
		Type:        typ,
		ContentType: "application/json",
		Data:        fmt.Appendf(nil, `{"id":%q}`, id),
	}
}

func newEvents(t testing.TB, n int, typ string) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = newEvent(t, typ)
	}
	return out
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t testing.TB, st eventstore.Store, stream string, exp eventstore.ExpectedRevision, events ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := st.Append(testCtx(t), stream, exp, events...)
	if err != nil {
		t.Fatalf("Append(%s, %v): %v", stream, exp, err)
	}
	return res
}

func checkIDs(t testing.TB, got []eventstore.RecordedEvent, want []eventstore.EventData) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID {
			t.Fatalf("event %d is %s, want %s", i, got[i].ID, want[i].ID)
		}
	}
}

// TestReplyLostAfterCommit: the server commits, then the connection is cut
// before the reply. The adapter's retry with the same IDs finds the events
// and reports a duplicate; no second copy is written.
func TestReplyLostAfterCommit(t *testing.T) {
	for _, exp := range []eventstore.ExpectedRevision{eventstore.NoStream(), eventstore.Any(), eventstore.StreamExists(), eventstore.Exact(0)} {
		t.Run(exp.String(), func(t *testing.T) {
			srv := startServer(t)
			st := open(t, srv.ConnString())
			if exp.Kind == eventstore.ExpectStreamExists || exp.Kind == eventstore.ExpectRevision {
				mustAppend(t, st, "order-1", eventstore.NoStream(), newEvent(t, "Created"))
			}
			batch := newEvents(t, 2, "Paid")
			srv.DropNextAppendReplies(1)
			res := mustAppend(t, st, "order-1", exp, batch...)
			if !res.Duplicate {
				t.Fatalf("append whose reply was lost: Duplicate is false (%+v)", res)
			}
			got, err := st.ReadStream(testCtx(t), "order-1", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			checkIDs(t, got[len(got)-2:], batch)
			if res.NextExpected != got[len(got)-1].Revision || res.Position != got[len(got)-1].Position {
				t.Fatalf("result %+v, want the stored copy at revision %d, %v", res, got[len(got)-1].Revision, got[len(got)-1].Position)
			}
			if s := srv.Stats(); s.Events != len(got) || s.Faults.RepliesDropped != 1 {
				t.Fatalf("server stats %+v, want %d events after 1 lost reply: the retry wrote a second copy", s, len(got))
			}
		})
	}
}

// TestReplyLostCallerRetries: with a single attempt the adapter reports the
// unknown outcome (ErrUnavailable); the caller's retry with the same IDs is
// a duplicate.
func TestReplyLostCallerRetries(t *testing.T) {
	srv := startServer(t)
	st := open(t, srv.ConnString(), esdb.WithAppendAttempts(1))
	batch := newEvents(t, 3, "Paid")
	srv.DropNextAppendReplies(1)
	_, err := st.Append(testCtx(t), "order-1", eventstore.NoStream(), batch...)
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("Append with lost reply: %v, want ErrUnavailable", err)
	}
	res := mustAppend(t, st, "order-1", eventstore.NoStream(), batch...)
	if !res.Duplicate || res.NextExpected != 2 {
		t.Fatalf("retry = %+v, want a duplicate at revision 2", res)
	}
	if n := srv.Stats().Events; n != 3 {
		t.Fatalf("server holds %d events, want 3", n)
	}
}

// TestNotLeader: a follower answers NotLeader with the leader's endpoint;
// the client reconnects there and the adapter's retry lands the events once.
func TestNotLeader(t *testing.T) {
	srv := startServer(t)
	st := open(t, srv.ConnString())
	srv.NotLeaderNext(1)
	batch := newEvents(t, 2, "Paid")
	res := mustAppend(t, st, "order-1", eventstore.NoStream(), batch...)
	if res.Duplicate || res.NextExpected != 1 {
		t.Fatalf("result %+v, want new events at revision 1", res)
	}
	if s := srv.Stats(); s.Events != 2 || s.Commits != 1 || s.Faults.NotLeader != 1 {
		t.Fatalf("server stats %+v, want 2 events in 1 commit after 1 NotLeader", s)
	}

	t.Run("persistent", func(t *testing.T) {
		srv.NotLeaderNext(100)
		defer srv.NotLeaderNext(-100)
		st := open(t, srv.ConnString(), esdb.WithAppendAttempts(3), esdb.WithRetryBackoff(time.Millisecond))
		_, err := st.Append(testCtx(t), "order-2", eventstore.NoStream(), newEvent(t, "Paid"))
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Fatalf("Append while no leader: %v, want ErrUnavailable", err)
		}
	})
}

// TestUnavailableRetried: "server not ready" answers are retried.
func TestUnavailableRetried(t *testing.T) {
	srv := startServer(t)
	st := open(t, srv.ConnString(), esdb.WithRetryBackoff(time.Millisecond))
	srv.UnavailableNext(2)
	res := mustAppend(t, st, "order-1", eventstore.NoStream(), newEvent(t, "Paid"))
	if res.Duplicate || res.NextExpected != 0 {
		t.Fatalf("result %+v", res)
	}
	if s := srv.Stats(); s.Events != 1 || s.Faults.Unavailable != 2 {
		t.Fatalf("server stats %+v, want 1 event after 2 Unavailable", s)
	}
}

// collectAll reads from sub until it has n events, resubscribing from the
// last checkpoint whenever Next reports ErrUnavailable. It fails on a
// repeated or skipped event (positions must strictly increase).
func collectAll(t *testing.T, st eventstore.Store, after eventstore.Position, opts eventstore.SubscribeOptions, n int) (events []eventstore.RecordedEvent, drops int) {
	t.Helper()
	ctx := testCtx(t)
	cp := after
	sub, err := st.Subscribe(ctx, cp, opts)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer func() { _ = sub.Close() }()
	for len(events) < n {
		b, err := sub.Next(ctx)
		if errors.Is(err, eventstore.ErrUnavailable) {
			drops++
			_ = sub.Close()
			if sub, err = st.Subscribe(ctx, cp, opts); err != nil {
				t.Fatalf("resubscribe after %v: %v", cp, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Next after %d events: %v", len(events), err)
		}
		for _, e := range b.Events {
			if len(events) > 0 && !events[len(events)-1].Position.Less(e.Position) {
				t.Fatalf("event at %v after %v: repeated or out of order", e.Position, events[len(events)-1].Position)
			}
			events = append(events, e)
		}
		if b.Checkpoint.Less(cp) {
			t.Fatalf("checkpoint went back from %v to %v", cp, b.Checkpoint)
		}
		cp = b.Checkpoint
	}
	return events, drops
}

// TestSubscriptionDropResume: the server drops subscriptions every few
// events; resuming from the last checkpoint skips nothing and repeats
// nothing, with the prefix filter and without, in catch-up and live.
func TestSubscriptionDropResume(t *testing.T) {
	for _, prefix := range []string{"", "order-"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			srv := startServer(t)
			st := open(t, srv.ConnString(), esdb.WithCheckpointInterval(2, 1))
			var want []eventstore.EventData
			for i := range 40 {
				stream := fmt.Sprintf("order-%d", i%3)
				if i%4 == 3 {
					stream = "refund-1"
				}
				e := newEvent(t, "Step")
				mustAppend(t, st, stream, eventstore.Any(), e)
				if len(stream) >= len(prefix) && stream[:len(prefix)] == prefix {
					want = append(want, e)
				}
			}
			srv.DropSubscriptionsAfter(3)
			// Live events while the subscription keeps dropping.
			live := newEvents(t, 5, "Live")
			want = append(want, live...)
			errc := make(chan error, 1)
			go func() {
				for _, e := range live {
					if _, err := st.Append(context.Background(), "order-live", eventstore.Any(), e); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			got, drops := collectAll(t, st, eventstore.Start, eventstore.SubscribeOptions{StreamPrefix: prefix, MaxBatch: 2}, len(want))
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			checkIDs(t, got, want)
			// The last subscription may be dropped after the collector is done.
			if f := srv.Stats().Faults.SubscriptionsDropped; drops < 5 || f < drops || f > drops+1 {
				t.Fatalf("%d drops seen, %d injected: the fault did not happen as planned", drops, f)
			}
		})
	}
}

// TestAutoResubscribe: with WithAutoResubscribe the subscription survives
// drops by itself, resuming from what it handed out.
func TestAutoResubscribe(t *testing.T) {
	srv := startServer(t)
	st := open(t, srv.ConnString(), esdb.WithAutoResubscribe(true), esdb.WithRetryBackoff(time.Millisecond))
	want := newEvents(t, 25, "Step")
	for _, e := range want {
		mustAppend(t, st, "order-1", eventstore.Any(), e)
	}
	srv.DropSubscriptionsAfter(4)
	got, drops := collectAll(t, st, eventstore.Start, eventstore.SubscribeOptions{StreamPrefix: "order-"}, len(want))
	if drops != 0 {
		t.Fatalf("Next reported %d drops; auto-resubscribe should hide them", drops)
	}
	checkIDs(t, got, want)
	if f := srv.Stats().Faults.SubscriptionsDropped; f < 25/4 {
		t.Fatalf("%d subscriptions dropped: the fault did not happen", f)
	}
}

// TestServerDownAndBack: when the node goes away the client's discovery
// fails and the client closes itself for good; the store reports
// ErrUnavailable, rebuilds the client, and works again once the node is
// back. An auto-resubscribing subscription resumes without loss.
func TestServerDownAndBack(t *testing.T) {
	srv := startServer(t)
	st := open(t, srv.ConnString(), esdb.WithAutoResubscribe(true), esdb.WithRetryBackoff(5*time.Millisecond), esdb.WithAppendAttempts(2))
	first := newEvent(t, "Paid")
	mustAppend(t, st, "order-1", eventstore.NoStream(), first)

	ctx := testCtx(t)
	sub, err := st.Subscribe(ctx, eventstore.Start, eventstore.SubscribeOptions{StreamPrefix: "order-"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	b, err := sub.Next(ctx)
	if err != nil || len(b.Events) != 1 || b.Events[0].ID != first.ID {
		t.Fatalf("first batch %+v, %v", b, err)
	}

	srv.Stop()
	_, err = st.Append(ctx, "order-1", eventstore.Exact(0), newEvent(t, "Refunded"))
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("Append while the node is down: %v, want ErrUnavailable", err)
	}
	_, err = st.ReadStream(ctx, "order-1", 0, 0)
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("ReadStream while the node is down: %v, want ErrUnavailable", err)
	}

	if n := esdb.Clients(st); n < 2 {
		t.Fatalf("%d clients built: the closed client was not rebuilt", n)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	second := newEvent(t, "Refunded")
	res := mustAppend(t, st, "order-1", eventstore.Exact(0), second)
	if res.NextExpected != 1 || res.Duplicate {
		t.Fatalf("append after restart = %+v", res)
	}
	b, err = sub.Next(ctx)
	if err != nil || len(b.Events) != 1 || b.Events[0].ID != second.ID {
		t.Fatalf("batch after restart %+v, %v; want just the new event", b, err)
	}
}

// TestOpenErrors: a malformed connection string is an invalid argument, an
// unreachable node is unavailable; the KurrentDB scheme is accepted.
func TestOpenErrors(t *testing.T) {
	ctx := testCtx(t)
	if _, err := esdb.Open(ctx, "http://[::1"); !errors.Is(err, eventstore.ErrInvalidArgument) {
		t.Fatalf("Open(malformed): %v, want ErrInvalidArgument", err)
	}
	srv := startServer(t)
	if st, err := esdb.Open(ctx, "kurrentdb://"+srv.Addr()+"?tls=false"); err != nil {
		t.Fatalf("Open(kurrentdb://): %v", err)
	} else {
		_ = st.Close()
	}
	url := srv.ConnString()
	srv.Stop()
	if _, err := esdb.Open(ctx, url); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("Open(no server): %v, want ErrUnavailable", err)
	}
}

// TestSystemAndForeignEventsHidden: $-streams, $-types and streams of
// another namespace on the same server are not part of the ledger's log.
func TestSystemAndForeignEventsHidden(t *testing.T) {
	srv := startServer(t)
	st := open(t, srv.ConnString(), esdb.WithStreamNamespace("ledgerA-"))
	other := open(t, srv.ConnString(), esdb.WithStreamNamespace("ledgerB-"))

	var want []eventstore.EventData
	for i := range 6 {
		e := newEvent(t, "Paid")
		mustAppend(t, st, fmt.Sprintf("order-%d", i), eventstore.NoStream(), e)
		want = append(want, e)
		mustAppend(t, other, fmt.Sprintf("order-%d", i), eventstore.NoStream(), newEvent(t, "Paid"))
		srv.AppendDirect("$stats-127.0.0.1:2113", esdbtest.Record{ID: newEvent(t, "x").ID, Type: "$statsCollected", ContentType: "application/json"})
		srv.AppendDirect("ledgerA-order-meta", esdbtest.Record{ID: newEvent(t, "x").ID, Type: "$metadata", ContentType: "application/json"})
	}
	got, err := st.ReadAll(testCtx(t), eventstore.Start, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, got, want)
	for _, e := range got {
		if e.StreamID[:6] != "order-" {
			t.Fatalf("stream %q: namespace not stripped", e.StreamID)
		}
	}
	for _, prefix := range []string{"", "order-"} {
		subbed, _ := collectAll(t, st, eventstore.Start, eventstore.SubscribeOptions{StreamPrefix: prefix}, len(want))
		checkIDs(t, subbed, want)
	}
	// The other ledger sees its own six.
	if got, err := other.ReadAll(testCtx(t), eventstore.Start, 100); err != nil || len(got) != 6 {
		t.Fatalf("other namespace: %d events, %v", len(got), err)
	}
}

// TestRefusedBeforeSending: what EventStoreDB cannot store faithfully is
// refused with ErrInvalidArgument and never reaches the server.
func TestRefusedBeforeSending(t *testing.T) {
	srv := startServer(t)
	st := open(t, srv.ConnString())
	tests := map[string]func(e *eventstore.EventData){
		"system type":        func(e *eventstore.EventData) { e.Type = "$metadata" },
		"other content type": func(e *eventstore.EventData) { e.ContentType = "text/plain" },
		"over MaxAppendSize": func(e *eventstore.EventData) { e.Data = make([]byte, esdb.DefaultMaxAppendSize) },
	}
	for name, change := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEvent(t, "Paid")
			change(&e)
			_, err := st.Append(testCtx(t), "order-1", eventstore.Any(), e)
			if !errors.Is(err, eventstore.ErrInvalidArgument) {
				t.Fatalf("Append: %v, want ErrInvalidArgument", err)
			}
		})
	}
	if _, err := st.Append(testCtx(t), "$system", eventstore.Any(), newEvent(t, "Paid")); !errors.Is(err, eventstore.ErrInvalidArgument) {
		t.Fatalf("Append to a $ stream: %v, want ErrInvalidArgument", err)
	}
	if s := srv.Stats(); s.Appends != 0 {
		t.Fatalf("%d appends reached the server", s.Appends)
	}
}

// TestContentTypes: JSON and binary round-trip; an empty content type is
// stored as binary.
func TestContentTypes(t *testing.T) {
	srv := startServer(t)
	st := open(t, srv.ConnString())
	j, b, none := newEvent(t, "A"), newEvent(t, "B"), newEvent(t, "C")
	b.ContentType = "application/octet-stream"
	none.ContentType = ""
	mustAppend(t, st, "order-1", eventstore.NoStream(), j, b, none)
	got, err := st.ReadStream(testCtx(t), "order-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"application/json", "application/octet-stream", "application/octet-stream"} {
		if got[i].ContentType != want {
			t.Fatalf("event %d: content type %q, want %q", i, got[i].ContentType, want)
		}
	}
	// Retrying the batch with the empty content type is still a duplicate.
	if res := mustAppend(t, st, "order-1", eventstore.NoStream(), j, b, none); !res.Duplicate {
		t.Fatalf("retry: %+v, want a duplicate", res)
	}
}

// TestServerRefusesLargeAppend: with the adapter's own size check off, the
// server's MaxAppendSize refusal reaches the client as an unclassified gRPC
// InvalidArgument: the append fails (outcome unknown to the adapter) and
// nothing is written.
func TestServerRefusesLargeAppend(t *testing.T) {
	srv := startServer(t)
	st := open(t, srv.ConnString(), esdb.WithMaxAppendSize(0))
	e := newEvent(t, "Bill")
	e.Data = make([]byte, esdbtest.DefaultMaxAppendSize)
	if _, err := st.Append(testCtx(t), "bill-1", eventstore.NoStream(), e); err == nil {
		t.Fatal("oversized append succeeded")
	}
	if n := srv.Stats().Events; n != 0 {
		t.Fatalf("server holds %d events", n)
	}
}
