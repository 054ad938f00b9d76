package main

// The notify end-to-end tests over the EventStoreDB backend: the node opens
// an esdb:// store (the read model stays in its data folder) and everything
// goes through the real client over real gRPC. They always run against the
// esdbtest test double (its esdbtestserver command, built and started as a
// process, one per test: `ledger serve --store esdb://...` sees the same),
// and also against a real server when LEDGER_ESDB_URL is set.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore/esdb"
	"github.com/orderledger/orderledger/projections"
)

// esdbTestServerPkg is the test double's command (internal to
// eventstore/esdb: built by path, not imported).
const esdbTestServerPkg = "github.com/orderledger/orderledger/eventstore/esdb/internal/esdbtest/cmd/esdbtestserver"

// esdbBackend is one EventStoreDB the end-to-end tests run on.
type esdbBackend struct {
	name string
	// opts returns the harness options of one test (t's store).
	opts func(t *testing.T) harnessOptions
}

// esdbBackends returns the test double (one server process per test, so
// the tests that count the whole global log see only their own events)
// and, when LEDGER_ESDB_URL is set, that real server. On the real server
// every harness gets its own stream namespace, unique per run: its old
// data and the other tests stay out of ReadAll and the projections, and
// reruns never meet their own old order ids.
func esdbBackends(t *testing.T) []esdbBackend {
	t.Helper()
	bin := buildESDBTestServer(t)
	out := []esdbBackend{{name: "testserver", opts: func(t *testing.T) harnessOptions {
		return harnessOptions{storeURL: startESDBTestServer(t, bin)}
	}}}
	if u := os.Getenv("LEDGER_ESDB_URL"); u != "" {
		run := time.Now().UnixNano()
		var seq atomic.Int64
		out = append(out, esdbBackend{name: "real", opts: func(t *testing.T) harnessOptions {
			ns := fmt.Sprintf("e2e%d_%d-", run, seq.Add(1))
			return harnessOptions{storeURL: u, esdbOpts: []esdb.Option{esdb.WithStreamNamespace(ns)}}
		}})
	}
	return out
}

// TestESDBEndToEnd runs the notify end-to-end tests on every EventStoreDB
// backend of esdbBackends, as subtests named by backend.
func TestESDBEndToEnd(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(t *testing.T, o harnessOptions)
	}{
		{"V2ExactlyOnceSequential", testV2ExactlyOnceSequential},
		{"V2ExactlyOnceConcurrent", testV2ExactlyOnceConcurrent},
		{"V2Anomalies", testV2Anomalies},
		{"OrderPlacement", testOrderPlacement},
		{"V3PaymentExactlyOnce", testV3PaymentExactlyOnce},
		{"V3Refusals", testV3Refusals},
		{"V3Anomalies", testV3Anomalies},
		{"Refunds", testRefunds},
		{"DailyTotals", testDailyTotals},
		{"ReadYourWrites", testReadYourWrites},
		{"ConcurrentPlacementConflict", testConcurrentPlacementConflict},
	}
	for _, b := range esdbBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, b.opts(t))
				})
			}
		})
	}
}

// TestDailyTotals and TestReadYourWrites run those bodies on the embedded
// store.
func TestDailyTotals(t *testing.T) {
	t.Parallel()
	testDailyTotals(t, harnessOptions{})
}

func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	testReadYourWrites(t, harnessOptions{})
}

func TestConcurrentPlacementConflict(t *testing.T) {
	t.Parallel()
	testConcurrentPlacementConflict(t, harnessOptions{})
}

// buildESDBTestServer builds the esdbtestserver command into t's temporary
// folder.
func buildESDBTestServer(t *testing.T) string { return goBuild(t, "esdbtestserver", esdbTestServerPkg) }

// startESDBTestServer starts the test server on a free port and returns
// the connection string it prints; t's cleanup kills it (after the nodes
// of t, whose cleanups are registered later, are closed).
func startESDBTestServer(t *testing.T, bin string) string {
	t.Helper()
	stdout, stderr := newPrefixWatcher("url "), &syncBuffer{}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0")
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	select {
	case u := <-stdout.found:
		return u
	case <-done:
		t.Fatalf("esdbtestserver exited: %v\n%s%s", cmd.ProcessState, stdout, stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("esdbtestserver printed no url within 60s\n%s%s", stdout, stderr)
	}
	return ""
}

// prefixWatcher is a Writer that reports the rest of the first whole line
// starting with prefix.
type prefixWatcher struct {
	syncBuffer
	prefix string
	once   sync.Once
	found  chan string
}

func newPrefixWatcher(prefix string) *prefixWatcher {
	return &prefixWatcher{prefix: prefix, found: make(chan string, 1)}
}

func (w *prefixWatcher) Write(p []byte) (int, error) {
	n, err := w.syncBuffer.Write(p)
	for line := range strings.Lines(w.String()) {
		if rest, ok := strings.CutPrefix(line, w.prefix); ok && strings.HasSuffix(rest, "\n") {
			w.once.Do(func() { w.found <- strings.TrimSpace(rest) })
			break
		}
	}
	return n, err
}

// testDailyTotals: the daily totals, read right after the last
// acknowledgement, count every order placed, every payment once however
// often and through whichever API it was notified, the refunds and the
// anomalies.
func testDailyTotals(t *testing.T, o harnessOptions) {
	h, srv, _ := v3SetupOn(t, o, newMerchant(t))
	m := h.m
	var placed, payments, paymentsFee int64
	tx := func(i int) string { return fmt.Sprintf("42000000000000000000%08d", i) }
	for i := range 6 {
		otn, fee := fmt.Sprintf("DT%03d", i), int64(1000+i*111)
		h.placeOrder(m, otn, fee)
		placed++
		p := wxsim.PayParams{OutTradeNo: otn, TransactionID: tx(i), TotalFee: fee}
		if i%2 == 0 {
			body := m.V2Pay(p)
			for c := range 1 + i%3 {
				mustV2Success(t, fmt.Sprintf("%s copy %d", otn, c), h.v2(body))
			}
		} else {
			hd, body := m.V3Pay(p)
			mustV3Success(t, otn, h.v3(hd, body))
			mustV3Success(t, otn+" again", h.v3(m.SignV3(body), body))
			mustV2Success(t, otn+" through v2", h.v2(m.V2Pay(p)))
		}
		payments++
		paymentsFee += fee
	}
	// A partial refund of DT000, twice.
	refund := m.V2Refund(wxsim.RefundParams{OutTradeNo: "DT000", TransactionID: tx(0), RefundID: "5000000000000000000000000000700",
		OutRefundNo: "RDT000", TotalFee: 1000, RefundFee: 300})
	mustV2Success(t, "refund", h.v2Refund(refund))
	mustV2Success(t, "refund again", h.v2Refund(refund))
	// An underpaid order (placed, not paid) and a payment of no order
	// (booked: an UNKNOWN_ORDER payment counts).
	h.placeOrder(m, "DTAM", 5000)
	placed++
	mustV2Success(t, "underpaid", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "DTAM", TotalFee: 4000})))
	mustV2Success(t, "unknown order", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "DTUO", TotalFee: 777})))
	payments++
	paymentsFee += 777

	day := srv.Now().In(domain.Beijing)
	q := url.Values{"from": {day.AddDate(0, 0, -1).Format(time.DateOnly)}, "to": {day.AddDate(0, 0, 1).Format(time.DateOnly)}}
	r := h.get("/v1/merchants/" + m.MchID + "/totals/daily?" + q.Encode())
	var totals struct {
		Days []projections.DailyTotal `json:"days"`
	}
	if r.err != nil || r.status != http.StatusOK || json.Unmarshal(r.body, &totals) != nil {
		t.Fatalf("totals: %v", r)
	}
	var got projections.DailyTotal
	got.Anomalies = map[string]int64{}
	for _, d := range totals.Days {
		got.OrdersPlaced += d.OrdersPlaced
		got.Payments += d.Payments
		got.PaymentsFee += d.PaymentsFee
		got.Refunds += d.Refunds
		got.RefundsFee += d.RefundsFee
		got.NetFee += d.NetFee
		for code, n := range d.Anomalies {
			got.Anomalies[code] += n
		}
	}
	if got.OrdersPlaced != placed || got.Payments != payments || got.PaymentsFee != paymentsFee ||
		got.Refunds != 1 || got.RefundsFee != 300 || got.NetFee != paymentsFee-300 ||
		len(got.Anomalies) != 2 || got.Anomalies[domain.AmountMismatch] != 1 || got.Anomalies[domain.UnknownOrder] != 1 {
		t.Fatalf("daily totals %+v; want %d placed, %d payments of %d fen, 1 refund of 300, one %s and one %s (days %+v)",
			got, placed, payments, paymentsFee, domain.AmountMismatch, domain.UnknownOrder, totals.Days)
	}
}

// testReadYourWrites: an order read right after the acknowledgement of a
// write shows that write (the server waits for the projections), in a row
// and with many orders at once.
func testReadYourWrites(t *testing.T, o harnessOptions) {
	h, _, _ := v3SetupOn(t, o, newMerchant(t))
	m := h.m
	for i := range 5 {
		otn := fmt.Sprintf("RYW%03d", i)
		h.placeOrder(m, otn, 100)
		h.mustOrder(m, otn, domain.StatusPending, 0, 0)
		p := wxsim.PayParams{OutTradeNo: otn, TransactionID: fmt.Sprintf("42000000000000000001%08d", i), TotalFee: 100}
		if i%2 == 0 {
			mustV2Success(t, otn, h.v2(m.V2Pay(p)))
		} else {
			hd, body := m.V3Pay(p)
			mustV3Success(t, otn, h.v3(hd, body))
		}
		h.mustOrder(m, otn, domain.StatusPaid, 100, 0)
		mustV2Success(t, otn+" refund", h.v2Refund(m.V2Refund(wxsim.RefundParams{OutTradeNo: otn, TransactionID: p.TransactionID,
			RefundID: fmt.Sprintf("50000000000000000000000%08d", i), OutRefundNo: "R" + otn, TotalFee: 100, RefundFee: 40})))
		h.mustOrder(m, otn, domain.StatusPartiallyRefunded, 100, 40)
	}

	// 24 orders at once, each read right after its payment's ack.
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			otn := fmt.Sprintf("RYWC%03d", i)
			fee := int64(200 + i)
			if r := h.placeRaw(orderRequest{MchID: m.MchID, AppID: m.AppID, OutTradeNo: otn, TotalFee: fee, Description: otn}); r.err != nil || r.status != http.StatusCreated {
				t.Errorf("place %s: %v", otn, r)
				return
			}
			if r := h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: otn, TotalFee: fee})); !isV2Success(r) {
				t.Errorf("pay %s: %v", otn, r)
				return
			}
			r := h.get(orderPath(m.MchID, otn))
			var v projections.OrderView
			if r.err != nil || r.status != http.StatusOK || json.Unmarshal(r.body, &v) != nil {
				t.Errorf("GET %s: %v", otn, r)
				return
			}
			if v.Status != domain.StatusPaid || v.PaidFee != fee {
				t.Errorf("%s right after the ack: %s paid %d, want %s paid %d", otn, v.Status, v.PaidFee, domain.StatusPaid, fee)
			}
		})
	}
	wg.Wait()
}

// testConcurrentPlacementConflict: 32 clients place the same out_trade_no
// at once, half with one amount and half with another (the OrderPlaced
// events share their ID): one is created, the other copies of its content
// get 200, the other content 409; the order then takes a payment of the
// amount stored, not the other one.
func testConcurrentPlacementConflict(t *testing.T, o harnessOptions) {
	h := startHarness(t, o)
	m := h.m
	const n = 32
	fees := [2]int64{1999, 2000}
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() {
			r := h.placeRaw(orderRequest{MchID: m.MchID, AppID: m.AppID, OutTradeNo: "PCC001", TotalFee: fees[i%2], Description: "racing"})
			if r.err != nil {
				t.Error(r.err)
			}
			statuses[i] = r.status
		})
	}
	wg.Wait()
	v := h.order(m, "PCC001")
	won := slices.Index(fees[:], v.TotalFee)
	if won < 0 {
		t.Fatalf("stored order %+v", v)
	}
	created, ok, conflict := 0, 0, 0
	for i, s := range statuses {
		switch {
		case s == http.StatusCreated && i%2 == won:
			created++
		case s == http.StatusOK && i%2 == won:
			ok++
		case s == http.StatusConflict && i%2 != won:
			conflict++
		default:
			t.Errorf("placement %d (fee %d, stored %d): status %d", i, fees[i%2], v.TotalFee, s)
		}
	}
	if created != 1 || ok != n/2-1 || conflict != n/2 {
		t.Fatalf("%d created, %d ok, %d conflicts; statuses %v", created, ok, conflict, statuses)
	}
	mustV2Success(t, "payment", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "PCC001", TotalFee: v.TotalFee})))
	h.mustOrder(m, "PCC001", domain.StatusPaid, v.TotalFee, 0)
	if evs := h.events(m, "PCC001"); len(evs) != 2 || countType(evs, domain.TypeAnomalyDetected) != 0 {
		t.Fatalf("events %v", types(evs))
	}
}
