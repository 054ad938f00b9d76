package wxsim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
)

// sleepRecorder is a Sleep that returns at once and records what it was
// asked to wait.
type sleepRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleepRecorder) Sleep(_ context.Context, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
}

// failingServer refuses the first k requests with the reply fail writes,
// then acknowledges with ok.
func failingServer(t *testing.T, k int64, fail, ok http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			t.Errorf("method %s", r.Method)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		if n.Add(1) <= k {
			fail(w, r)
			return
		}
		ok(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func v2OK(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/xml")
	_, _ = w.Write(wechatpay.V2Success())
}

func TestDeliverV2RetriesUntilSuccess(t *testing.T) {
	m := sandbox(t)
	body := m.V2Pay(PayParams{OutTradeNo: "o", TotalFee: 1})
	fails := map[string]http.HandlerFunc{
		"500":       func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) },
		"fail_body": func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(wechatpay.V2Fail("busy")) },
		"empty_200": func(w http.ResponseWriter, _ *http.Request) {},
		"201_success": func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(201)
			_, _ = w.Write(wechatpay.V2Success())
		},
	}
	for name, fail := range fails {
		t.Run(name, func(t *testing.T) {
			const k = 4
			srv, n := failingServer(t, k, fail, v2OK)
			var rec sleepRecorder
			res, err := Deliver(context.Background(), srv.Client(), srv.URL, V2Request(body), DeliverOptions{Sleep: rec.Sleep, Compress: 1000})
			if err != nil || !res.Delivered {
				t.Fatalf("Deliver = %+v, %v", res, err)
			}
			if len(res.Attempts) != k+1 || n.Load() != k+1 {
				t.Fatalf("%d attempts, %d requests; want %d", len(res.Attempts), n.Load(), k+1)
			}
			for i, a := range res.Attempts {
				if a.N != i+1 || a.Accepted != (i == k) || len(a.Copies) != 1 {
					t.Errorf("attempt %d: %+v", i, a)
				}
			}
			want := []time.Duration{15 * time.Millisecond, 15 * time.Millisecond, 30 * time.Millisecond, 180 * time.Millisecond}
			if !slices.Equal(rec.waits, want) {
				t.Errorf("waits %v, want %v", rec.waits, want)
			}
			if res.Attempts[4].Wait != 3*time.Minute || res.Attempts[0].Wait != 0 {
				t.Errorf("nominal waits %v, %v", res.Attempts[0].Wait, res.Attempts[4].Wait)
			}
		})
	}
}

func TestDeliverGivesUpAfterSchedule(t *testing.T) {
	srv, n := failingServer(t, 1<<30, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }, v2OK)
	var rec sleepRecorder
	res, err := Deliver(context.Background(), srv.Client(), srv.URL, V2Request([]byte("<xml/>")), DeliverOptions{Sleep: rec.Sleep})
	if !errors.Is(err, ErrNotAcknowledged) || res.Delivered {
		t.Fatalf("err = %v", err)
	}
	if len(res.Attempts) != 16 || n.Load() != 16 {
		t.Fatalf("%d attempts, %d requests; want 16", len(res.Attempts), n.Load())
	}
	var total time.Duration
	for _, d := range rec.waits {
		total += d
	}
	if total != 24*time.Hour+4*time.Minute {
		t.Errorf("uncompressed waits add to %v, want 24h4m", total)
	}
	if res.Attempts[15].Copies[0].Status != 503 {
		t.Errorf("%+v", res.Attempts[15])
	}
}

func TestDeliverConcurrentCopies(t *testing.T) {
	var inFlight, peak atomic.Int64
	gate := make(chan struct{})
	var arrived atomic.Int64
	srv, n := failingServer(t, 3,
		func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) },
		func(w http.ResponseWriter, r *http.Request) {
			cur := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				p := peak.Load()
				if cur <= p || peak.CompareAndSwap(p, cur) {
					break
				}
			}
			if arrived.Add(1) == 3 {
				close(gate) // all three copies of the attempt are in flight together
			}
			select {
			case <-gate:
			case <-r.Context().Done():
			}
			v2OK(w, r)
		})
	res, err := Deliver(context.Background(), srv.Client(), srv.URL, V2Request([]byte("<xml/>")), DeliverOptions{Sleep: func(context.Context, time.Duration) {}, Copies: 3})
	if err != nil || !res.Delivered {
		t.Fatalf("%+v, %v", res, err)
	}
	if len(res.Attempts) != 2 || n.Load() != 6 {
		t.Fatalf("%d attempts, %d requests; want 2 and 6", len(res.Attempts), n.Load())
	}
	if peak.Load() != 3 {
		t.Errorf("peak concurrency %d, want 3", peak.Load())
	}
	for _, o := range res.Attempts[1].Copies {
		if !o.Accepted || o.Status != 200 {
			t.Errorf("%+v", o)
		}
	}
}

func TestDeliverV3(t *testing.T) {
	m := sandbox(t)
	var mu sync.Mutex
	clock := m.now()
	m.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	v, err := m.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := v.Verify(r.Header, body); err != nil {
			t.Errorf("attempt %d: %v", len(seen)+1, err)
		}
		seen = append(seen, r.Header.Get(wechatpay.HeaderTimestamp))
		switch len(seen) {
		case 1:
			w.WriteHeader(500)
		case 2:
			w.WriteHeader(202) // not 200/204: a failure to WeChat
		case 3:
			w.WriteHeader(204)
		}
	}))
	defer srv.Close()
	h, body := m.V3Pay(PayParams{OutTradeNo: "o", TotalFee: 1})
	// The sim clock moves with the (compressed) schedule, and every retry
	// is re-signed, so it stays inside the receiver's 5-minute window.
	sleep := func(_ context.Context, d time.Duration) {
		mu.Lock()
		clock = clock.Add(d)
		mu.Unlock()
	}
	res, err := Deliver(context.Background(), srv.Client(), srv.URL, m.V3Request(h, body), DeliverOptions{Sleep: sleep})
	if err != nil || !res.Delivered || len(res.Attempts) != 3 {
		t.Fatalf("%+v, %v", res, err)
	}
	if seen[0] == seen[1] || seen[1] == seen[2] {
		t.Errorf("retries not re-signed: %v", seen)
	}
	// 200 with a FAIL JSON body is still a success for v3.
	srv2, _ := failingServer(t, 0, nil, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"code":"FAIL"}`)) })
	if res, err := Deliver(context.Background(), srv2.Client(), srv2.URL, Request{Version: 3, Body: body}, DeliverOptions{}); err != nil || len(res.Attempts) != 1 {
		t.Errorf("%+v, %v", res, err)
	}
}

func TestDeliverTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	attempts := 0
	sleep := func(context.Context, time.Duration) {
		attempts++
		if attempts == 2 {
			cancel()
		}
	}
	res, err := Deliver(ctx, srv.Client(), srv.URL, V2Request([]byte("<xml/>")), DeliverOptions{Sleep: sleep, Timeout: 20 * time.Millisecond})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(res.Attempts) != 2 {
		t.Fatalf("%d attempts", len(res.Attempts))
	}
	for _, a := range res.Attempts {
		if o := a.Copies[0]; o.Err == nil || o.Accepted || o.Status != 0 {
			t.Errorf("timed-out copy: %+v", o)
		}
	}
	if _, err := Deliver(context.Background(), nil, srv.URL, Request{Version: 4}, DeliverOptions{}); err == nil {
		t.Error("version 4 accepted")
	}
}
