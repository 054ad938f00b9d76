package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/sqlite"
)

// storedPayments opens the (closed) data folder's store and maps each
// transaction id to its number of PaymentConfirmed events.
func storedPayments(t *testing.T, dataDir string) map[string]int {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(dataDir, eventsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, err := readAll(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range recs {
		if r.Type != domain.TypePaymentConfirmed {
			continue
		}
		var p struct {
			TransactionID string `json:"transaction_id"`
		}
		if err := json.Unmarshal(r.Data, &p); err != nil {
			t.Fatal(err)
		}
		out[p.TransactionID]++
	}
	return out
}

// TestShutdownFinishesInFlight: notifications whose appends are under way
// when the node is told to close complete, get their success reply, and
// are stored; the listener is closed meanwhile.
func TestShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	fake := &fakeStore{}
	h := startHarness(t, harnessOptions{wrap: func(s eventstore.Store) eventstore.Store { fake.Store = s; return fake }})
	m := h.m
	h.placeOrder(m, "SD001", 100)
	h.placeOrder(m, "SD002", 200)

	entered, release := make(chan struct{}, 2), make(chan struct{})
	fake.setAppend(func(ctx context.Context, inner eventstore.Store, stream string, exp eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
		entered <- struct{}{}
		<-release
		return inner.Append(ctx, stream, exp, evs...)
	})
	replies := make(chan reply, 2)
	go func() {
		replies <- h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "SD001", TransactionID: "4200000000000000000000000501", TotalFee: 100}))
	}()
	hd, body := m.V3Pay(wxsim.PayParams{OutTradeNo: "SD002", TransactionID: "4200000000000000000000000502", TotalFee: 200})
	go func() { replies <- h.v3(hd, body) }()
	<-entered
	<-entered // both are verified and appending

	shutdown := make(chan struct{})
	h.n.srv.RegisterOnShutdown(func() { close(shutdown) })
	closed := make(chan error, 1)
	go func() { closed <- h.n.Close(context.Background()) }()
	<-shutdown // the listener is closed by now
	if c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://")); err == nil {
		c.Close()
		t.Fatal("new connections still accepted during shutdown")
	}
	close(release)
	for range 2 {
		r := <-replies
		if !isV2Success(r) && r.status != http.StatusNoContent {
			t.Fatalf("in-flight notification: %v", r)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	got := storedPayments(t, h.dir)
	if got["4200000000000000000000000501"] != 1 || got["4200000000000000000000000502"] != 1 || len(got) != 2 {
		t.Fatalf("stored payments %v", got)
	}
}

// TestServeGracefulShutdown runs `ledger serve` in-process (Main) under a
// notification storm and cancels its context half-way: Main returns 0, and
// every notification that got SUCCESS is stored, exactly once. Those cut
// off get a connection error, never a success.
func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	m := newMerchant(t)
	cfg, err := wxsim.WriteConfig(t.TempDir(), m)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := newLineWatcher(), &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--merchants", cfg}, stdout, stderr, func(string) string { return "" })
	}()
	base := waitURL(t, stdout, done)
	h := &harness{t: t, url: base, m: m, ms: []*wxsim.Merchant{m}, client: newTestClient()}
	defer h.client.CloseIdleConnections()

	const n = 120
	for i := range n {
		h.placeOrder(m, fmt.Sprintf("GS%03d", i), int64(10+i))
	}
	replies := make([]reply, n)
	var wg sync.WaitGroup
	var cancelOnce sync.Once
	var acks atomic.Int64
	var stoppedAt atomic.Value
	stop := func() { stoppedAt.Store(time.Now()); cancel() }
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			replies[i] = h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: fmt.Sprintf("GS%03d", i), TransactionID: fmt.Sprintf("42000000%020d", i), TotalFee: int64(10 + i)}))
			if isV2Success(replies[i]) && acks.Add(1) == n/4 {
				cancelOnce.Do(stop) // shut down while the rest are in flight
			}
		})
	}
	wg.Wait()
	cancelOnce.Do(stop)
	select {
	case code := <-done:
		t.Logf("Main returned %s after the cancel", time.Since(stoppedAt.Load().(time.Time)))
		if code != 0 {
			t.Fatalf("Main returned %d\n%s", code, stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Main did not return after cancel")
	}
	got := storedPayments(t, data)
	acked, refused := 0, 0
	for i, r := range replies {
		tx := fmt.Sprintf("42000000%020d", i)
		switch {
		case got[tx] > 1:
			t.Errorf("%s stored %d times", tx, got[tx])
		case isV2Success(r):
			acked++
			if got[tx] != 1 {
				t.Errorf("GS%03d acknowledged but not stored", i)
			}
		case r.err == nil:
			// Shutdown waits for the handlers before the store closes, so
			// a request is either served in full or never reaches one.
			t.Errorf("GS%03d: want SUCCESS or a connection error, got %v", i, r)
		default:
			refused++
		}
	}
	t.Logf("%d acknowledged, %d cut off, %d stored", acked, refused, len(got))
	if !strings.Contains(stderr.String(), "stopped cleanly") {
		t.Errorf("log: %s", stderr)
	}
}
