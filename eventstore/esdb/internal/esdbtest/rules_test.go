package esdbtest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderledger/orderledger/eventstore/esdb/internal/esdbtest"
)

// These tests state the server rules the double follows, through the raw
// client. They run against the double, and also against a real EventStoreDB
// when LEDGER_ESDB_URL is set: that is how the double's fidelity is checked.
// Stream names are unique per run, so a real server's other data does not
// matter.

type target struct {
	name   string
	client *esdbclient.Client
	prefix string // unique stream-name prefix of this run
}

func targets(t *testing.T) []target {
	t.Helper()
	srv, err := esdbtest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	out := []target{{name: "double", client: newClient(t, srv.ConnString())}}
	if url := os.Getenv("LEDGER_ESDB_URL"); url != "" {
		out = append(out, target{name: "real", client: newClient(t, url)})
	}
	run := time.Now().UnixNano()
	for i := range out {
		out[i].prefix = fmt.Sprintf("rules%d-", run)
	}
	return out
}

func newClient(t *testing.T, url string) *esdbclient.Client {
	t.Helper()
	cfg, err := esdbclient.ParseConnectionString(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdbclient.NoopLogging()
	c, err := esdbclient.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func each(t *testing.T, f func(t *testing.T, tg target)) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) { f(t, tg) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

func events(n int, typ string) []esdbclient.EventData {
	out := make([]esdbclient.EventData, n)
	for i := range out {
		out[i] = esdbclient.EventData{EventID: uuid.New(), EventType: typ, ContentType: esdbclient.ContentTypeJson, Data: []byte(`{}`)}
	}
	return out
}

func appendTo(t *testing.T, c *esdbclient.Client, stream string, exp esdbclient.ExpectedRevision, evs ...esdbclient.EventData) (*esdbclient.WriteResult, error) {
	t.Helper()
	return c.AppendToStream(ctx(t), stream, esdbclient.AppendToStreamOptions{ExpectedRevision: exp}, evs...)
}

func mustAppend(t *testing.T, c *esdbclient.Client, stream string, exp esdbclient.ExpectedRevision, evs ...esdbclient.EventData) *esdbclient.WriteResult {
	t.Helper()
	wr, err := appendTo(t, c, stream, exp, evs...)
	if err != nil {
		t.Fatalf("append %s: %v", stream, err)
	}
	return wr
}

func readStream(t *testing.T, c *esdbclient.Client, stream string) []*esdbclient.RecordedEvent {
	t.Helper()
	rs, err := c.ReadStream(ctx(t), stream, esdbclient.ReadStreamOptions{From: esdbclient.Start{}}, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []*esdbclient.RecordedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		var e *esdbclient.Error
		if errors.As(err, &e) && e.Code() == esdbclient.ErrorCodeResourceNotFound {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Event)
	}
}

func wantWEV(t *testing.T, err error) {
	t.Helper()
	var e *esdbclient.Error
	if !errors.As(err, &e) || e.Code() != esdbclient.ErrorCodeWrongExpectedVersion {
		t.Fatalf("error %v, want ErrorCodeWrongExpectedVersion", err)
	}
	// The trap the adapter avoids: FromError's boolean is false for the
	// client's own errors.
	if _, ok := esdbclient.FromError(err); ok {
		t.Fatal("FromError reported no error for a WrongExpectedVersion")
	}
}

func TestRevisionsFromZeroAndIdempotentRetry(t *testing.T) {
	each(t, func(t *testing.T, tg target) {
		s := tg.prefix + "order-1"
		first := events(2, "Created")
		wr := mustAppend(t, tg.client, s, esdbclient.NoStream{}, first...)
		if wr.NextExpectedVersion != 1 {
			t.Fatalf("NextExpectedVersion %d, want 1", wr.NextExpectedVersion)
		}
		// The same IDs again, same expectation: idempotent success.
		wr = mustAppend(t, tg.client, s, esdbclient.NoStream{}, first...)
		if wr.NextExpectedVersion != 1 {
			t.Fatalf("idempotent retry: NextExpectedVersion %d, want 1", wr.NextExpectedVersion)
		}
		more := events(1, "Paid")
		mustAppend(t, tg.client, s, esdbclient.Revision(1), more...)
		// Retry of the exact append after the stream moved on: idempotent.
		mustAppend(t, tg.client, s, esdbclient.Revision(0), first[1])
		// Any with IDs already in the stream: idempotent.
		mustAppend(t, tg.client, s, esdbclient.Any{}, more...)
		got := readStream(t, tg.client, s)
		if len(got) != 3 {
			t.Fatalf("stream holds %d events, want 3", len(got))
		}
		for i, e := range got {
			if e.EventNumber != uint64(i) {
				t.Fatalf("event %d has revision %d", i, e.EventNumber)
			}
		}
	})
}

func TestWrongExpectedVersion(t *testing.T) {
	each(t, func(t *testing.T, tg target) {
		s := tg.prefix + "order-2"
		a := events(2, "Created")
		mustAppend(t, tg.client, s, esdbclient.NoStream{}, a...)
		_, err := appendTo(t, tg.client, s, esdbclient.NoStream{}, events(1, "X")...)
		wantWEV(t, err)
		_, err = appendTo(t, tg.client, s, esdbclient.Revision(5), events(1, "X")...)
		wantWEV(t, err)
		// Partly stored: first ID matches, second does not.
		_, err = appendTo(t, tg.client, s, esdbclient.NoStream{}, a[0], events(1, "X")[0])
		wantWEV(t, err)
		_, err = appendTo(t, tg.client, tg.prefix+"missing", esdbclient.StreamExists{}, events(1, "X")...)
		wantWEV(t, err)
		if n := len(readStream(t, tg.client, s)); n != 2 {
			t.Fatalf("stream holds %d events, want 2", n)
		}
	})
}

// TestExactAtEndIgnoresIDs: with the expectation equal to the stream's
// revision the server writes without looking at IDs, so an ID can be
// stored twice. This is why the adapter reads the stream before appending.
func TestExactAtEndIgnoresIDs(t *testing.T) {
	each(t, func(t *testing.T, tg target) {
		s := tg.prefix + "order-3"
		a := events(1, "Created")
		mustAppend(t, tg.client, s, esdbclient.NoStream{}, a...)
		mustAppend(t, tg.client, s, esdbclient.Revision(0), a...)
		got := readStream(t, tg.client, s)
		if len(got) != 2 || got[0].EventID != got[1].EventID {
			t.Fatalf("stream holds %d events; want the same ID twice", len(got))
		}
	})
}

// TestZeroIDIsReplaced: the client invents a random ID for the zero UUID,
// which defeats idempotency; the adapter refuses zero IDs.
func TestZeroIDIsReplaced(t *testing.T) {
	each(t, func(t *testing.T, tg target) {
		s := tg.prefix + "order-4"
		e := esdbclient.EventData{EventType: "Created", ContentType: esdbclient.ContentTypeJson, Data: []byte(`{}`)}
		mustAppend(t, tg.client, s, esdbclient.Any{}, e)
		mustAppend(t, tg.client, s, esdbclient.Any{}, e)
		got := readStream(t, tg.client, s)
		if len(got) != 2 || got[0].EventID == uuid.Nil || got[0].EventID == got[1].EventID {
			t.Fatalf("got %d events; want two with different random IDs", len(got))
		}
	})
}

// TestAllPositions: $all positions are sparse and increase; a read of $all
// from a position includes the event there; a subscription from a position
// excludes it; a subscription without From starts at the end.
func TestAllPositions(t *testing.T) {
	each(t, func(t *testing.T, tg target) {
		s := tg.prefix + "order-5"
		mustAppend(t, tg.client, s, esdbclient.NoStream{}, events(3, "Step")...)
		got := readStream(t, tg.client, s)
		for i := 1; i < len(got); i++ {
			p, q := got[i-1].Position, got[i].Position
			if !(p.Commit < q.Commit || (p.Commit == q.Commit && p.Prepare < q.Prepare)) {
				t.Fatalf("positions %v then %v do not increase", p, q)
			}
			if q.Prepare-p.Prepare <= 1 {
				t.Fatalf("positions %v then %v look like a counter", p, q)
			}
		}
		rs, err := tg.client.ReadAll(ctx(t), esdbclient.ReadAllOptions{From: got[1].Position}, 1)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := rs.Recv()
		rs.Close()
		if err != nil || ev.Event.EventID != got[1].EventID {
			t.Fatalf("ReadAll from the 2nd event's position: %v, %v; want that event (inclusive)", ev, err)
		}

		filter := &esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: []string{s}}
		sub, err := tg.client.SubscribeToAll(ctx(t), esdbclient.SubscribeToAllOptions{From: got[1].Position, Filter: filter})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		if ev := firstEvent(t, sub); ev.Event.EventID != got[2].EventID {
			t.Fatalf("subscription from the 2nd event's position starts with %s, want the 3rd event (exclusive)", ev.Event.EventID)
		}

		live, err := tg.client.SubscribeToAll(ctx(t), esdbclient.SubscribeToAllOptions{Filter: filter})
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		next := events(1, "Live")
		mustAppend(t, tg.client, s, esdbclient.Revision(2), next...)
		if ev := firstEvent(t, live); ev.Event.EventID != next[0].EventID {
			t.Fatalf("subscription without From delivered a stored event first; want only the new one")
		}
	})
}

// firstEvent returns the first event sub delivers; a drop fails the test.
func firstEvent(t *testing.T, sub *esdbclient.Subscription) *esdbclient.ResolvedEvent {
	t.Helper()
	for {
		m := sub.Recv()
		if m.SubscriptionDropped != nil {
			t.Fatalf("dropped: %v", m.SubscriptionDropped.Error)
		}
		if m.EventAppeared != nil {
			return m.EventAppeared
		}
	}
}

// TestFilteredCheckpoints: a filtered subscription reports progress through
// skipped events with checkpoints.
func TestFilteredCheckpoints(t *testing.T) {
	each(t, func(t *testing.T, tg target) {
		skip := tg.prefix + "refund-1"
		wr := mustAppend(t, tg.client, skip, esdbclient.NoStream{}, events(1, "Skip")...)
		start := esdbclient.Position{Commit: wr.CommitPosition, Prepare: wr.PreparePosition}
		for range 9 {
			mustAppend(t, tg.client, skip, esdbclient.Any{}, events(1, "Skip")...)
		}
		sub, err := tg.client.SubscribeToAll(ctx(t), esdbclient.SubscribeToAllOptions{
			From:               start,
			Filter:             &esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: []string{tg.prefix + "order-"}},
			MaxSearchWindow:    2,
			CheckpointInterval: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		for {
			m := sub.Recv()
			if m.SubscriptionDropped != nil {
				t.Fatalf("dropped: %v", m.SubscriptionDropped.Error)
			}
			if m.EventAppeared != nil {
				t.Fatalf("filtered subscription delivered %s", m.EventAppeared.Event.StreamID)
			}
			if m.CheckPointReached != nil {
				p := m.CheckPointReached
				if p.Commit < start.Commit {
					t.Fatalf("checkpoint %v before the start %v", p, start)
				}
				return
			}
		}
	})
}

// TestMissingStream: reading a stream that does not exist ends with
// ErrorCodeResourceNotFound from Recv.
func TestMissingStream(t *testing.T) {
	each(t, func(t *testing.T, tg target) {
		rs, err := tg.client.ReadStream(ctx(t), tg.prefix+"never", esdbclient.ReadStreamOptions{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		_, err = rs.Recv()
		var e *esdbclient.Error
		if !errors.As(err, &e) || e.Code() != esdbclient.ErrorCodeResourceNotFound {
			t.Fatalf("Recv: %v, want ErrorCodeResourceNotFound", err)
		}
	})
}
