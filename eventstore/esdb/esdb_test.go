package esdb_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/esdb"
	"github.com/orderledger/orderledger/eventstore/esdb/internal/esdbtest"
	"github.com/orderledger/orderledger/eventstore/storetest"
)

// startServer starts the esdbtest double (NOT EventStoreDB) for one test.
func startServer(t testing.TB) *esdbtest.Server {
	t.Helper()
	srv, err := esdbtest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("start test server: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// open opens a store on url through the real client; closed with the test.
func open(t testing.TB, url string, opts ...esdb.Option) *esdb.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := esdb.Open(ctx, url, opts...)
	if err != nil {
		t.Fatalf("esdb.Open(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// harness runs the suite with one fresh store per Open. urlFor gives the
// server (and options) for a new, empty store; Reopen opens the same server
// and namespace again.
func harness(urlFor func(t *testing.T) (string, []esdb.Option)) storetest.Harness {
	type target struct {
		url  string
		opts []esdb.Option
	}
	var mu sync.Mutex
	targets := map[eventstore.Store]target{}
	return storetest.Harness{
		Open: func(t *testing.T) eventstore.Store {
			url, opts := urlFor(t)
			st := open(t, url, opts...)
			mu.Lock()
			targets[st] = target{url, opts}
			mu.Unlock()
			return st
		},
		Reopen: func(t *testing.T, s eventstore.Store) eventstore.Store {
			mu.Lock()
			tg, ok := targets[s]
			mu.Unlock()
			if !ok {
				t.Fatal("Reopen of a store the harness did not open")
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			st := open(t, tg.url, tg.opts...)
			mu.Lock()
			targets[st] = tg
			mu.Unlock()
			return st
		},
	}
}

// TestConformance runs the eventstore conformance suite through the real
// EventStore-Client-Go client and real gRPC against the esdbtest double,
// one fresh server per store.
func TestConformance(t *testing.T) {
	storetest.Run(t, harness(func(t *testing.T) (string, []esdb.Option) {
		return startServer(t).ConnString(), nil
	}))
}

// TestConformanceRealServer runs the same suite against the EventStoreDB
// named by LEDGER_ESDB_URL (e.g. esdb://127.0.0.1:2113?tls=false). Every
// store gets its own stream namespace, so reruns do not collide and other
// data on the server stays out of ReadAll and Subscribe.
func TestConformanceRealServer(t *testing.T) {
	url := os.Getenv("LEDGER_ESDB_URL")
	if url == "" {
		t.Skip("LEDGER_ESDB_URL is not set: no real EventStoreDB to test against")
	}
	run := time.Now().UnixNano()
	var n atomic.Int64
	storetest.Run(t, harness(func(t *testing.T) (string, []esdb.Option) {
		ns := fmt.Sprintf("storetest%d_%d-", run, n.Add(1))
		return url, []esdb.Option{esdb.WithStreamNamespace(ns)}
	}))
}
