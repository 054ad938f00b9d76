package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/sqlite"
)

// failingAppends makes the fake's next n appends (n < 0: all) fail with
// err without writing; after that it passes appends through.
func failingAppends(fake *fakeStore, err error) *atomic.Int64 {
	var left atomic.Int64
	fake.setAppend(func(ctx context.Context, inner eventstore.Store, stream string, exp eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
		if left.Add(-1) >= 0 {
			return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
		}
		return inner.Append(ctx, stream, exp, evs...)
	})
	return &left
}

// TestStoreFailure: when the store cannot append, a notification is not
// acknowledged (v2: 5xx and a FAIL body; v3: 5xx JSON), nothing of it is
// stored, and when the store recovers WeChat's retry is recorded once.
func TestStoreFailure(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name   string
		err    error
		status int
	}{
		{"unavailable", eventstore.ErrUnavailable, http.StatusServiceUnavailable},
		{"plain error", errInjected, http.StatusInternalServerError},
		{"deadline exceeded", context.DeadlineExceeded, http.StatusServiceUnavailable},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeStore{}
			h := startHarness(t, harnessOptions{wrap: func(s eventstore.Store) eventstore.Store { fake.Store = s; return fake }})
			m := h.m
			h.placeOrder(m, "SF001", 100)
			h.placeOrder(m, "SF002", 200)
			before := len(h.storeEvents())
			left := failingAppends(fake, mode.err)
			left.Store(1 << 30)

			v2body := m.V2Pay(wxsim.PayParams{OutTradeNo: "SF001", TotalFee: 100})
			mustV2Fail(t, "v2 while the store fails", h.v2(v2body), mode.status)
			v3hdr, v3body := m.V3Pay(wxsim.PayParams{OutTradeNo: "SF002", TotalFee: 200})
			r := h.v3(v3hdr, v3body)
			mustV3Refused(t, "v3 while the store fails", r, mode.status)
			var reply struct{ Code string }
			if json.Unmarshal(r.body, &reply); reply.Code != "FAIL" {
				t.Fatalf("v3 reply %v", r)
			}
			if r := h.placeRaw(orderRequest{MchID: m.MchID, AppID: m.AppID, OutTradeNo: "SF003", TotalFee: 1, Description: "x"}); r.err != nil || r.status != mode.status {
				t.Fatalf("placement while the store fails: want %d, got %v", mode.status, r)
			}
			if after := len(h.storeEvents()); after != before {
				t.Fatalf("%d events stored while every append failed", after-before)
			}

			// The store recovers after two more failures: WeChat's third
			// attempt is acknowledged, and recorded once.
			for _, c := range []struct {
				otn string
				req wxsim.Request
			}{
				{"SF001", wxsim.V2Request(v2body)},
				{"SF002", m.V3Request(v3hdr, v3body)},
			} {
				left.Store(2)
				res, err := h.deliver(notifyPath(c.req), c.req, 1)
				if err != nil || len(res.Attempts) != 3 {
					t.Fatalf("%s: %v after %d attempts", c.otn, err, len(res.Attempts))
				}
				for _, a := range res.Attempts[:2] {
					if o := a.Copies[0]; o.Status != mode.status {
						t.Fatalf("%s attempt %d: want %d, got %d %s", c.otn, a.N, mode.status, o.Status, o.Body)
					}
				}
				if c.req.Version == 2 && string(res.Attempts[2].Copies[0].Body) != v2SuccessBody {
					t.Fatalf("%s: final reply %q", c.otn, res.Attempts[2].Copies[0].Body)
				}
				if evs := h.events(m, c.otn); countType(evs, domain.TypePaymentConfirmed) != 1 || len(evs) != 2 {
					t.Fatalf("%s: events %v", c.otn, types(evs))
				}
			}
			h.mustOrder(m, "SF001", domain.StatusPaid, 100, 0)
			h.mustOrder(m, "SF002", domain.StatusPaid, 200, 0)
			if r := h.get("/readyz"); r.status != http.StatusOK {
				t.Fatalf("readyz after recovery: %v", r)
			}
		})
	}
}

func notifyPath(req wxsim.Request) string {
	if req.Version == 3 {
		return "/wechatpay/v3/notify"
	}
	return "/wechatpay/v2/notify"
}

// TestStoreOutcomeUnknown: the append reaches the store but its reply is
// lost (the store says "outcome unknown"). The notification must not be
// acknowledged; WeChat's retry is, and the store still holds one payment.
func TestStoreOutcomeUnknown(t *testing.T) {
	t.Parallel()
	fake := &fakeStore{}
	h := startHarness(t, harnessOptions{wrap: func(s eventstore.Store) eventstore.Store { fake.Store = s; return fake }})
	m := h.m
	h.placeOrder(m, "OU001", 100)
	h.placeOrder(m, "OU002", 200)
	h.placeOrder(m, "OU003", 300)
	var lost atomic.Int64
	fake.setAppend(func(ctx context.Context, inner eventstore.Store, stream string, exp eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
		res, err := inner.Append(ctx, stream, exp, evs...)
		if err == nil && lost.Add(-1) >= 0 {
			return eventstore.AppendResult{}, fmt.Errorf("append %s: reply lost: %w", stream, eventstore.ErrUnavailable)
		}
		return res, err
	})

	lost.Store(1)
	v2body := m.V2Pay(wxsim.PayParams{OutTradeNo: "OU001", TotalFee: 100})
	mustV2Fail(t, "v2 with its reply lost", h.v2(v2body), http.StatusServiceUnavailable)
	if n := countType(h.events(m, "OU001"), domain.TypePaymentConfirmed); n != 1 {
		t.Fatalf("the lost append should be stored: %d PaymentConfirmed", n)
	}
	for i := range 3 {
		mustV2Success(t, fmt.Sprintf("v2 retry %d", i), h.v2(v2body))
	}

	lost.Store(1)
	v3hdr, v3body := m.V3Pay(wxsim.PayParams{OutTradeNo: "OU002", TotalFee: 200})
	mustV3Refused(t, "v3 with its reply lost", h.v3(v3hdr, v3body), http.StatusServiceUnavailable)
	res, err := h.deliver("/wechatpay/v3/notify", m.V3Request(m.SignV3(v3body), v3body), 1)
	if err != nil || len(res.Attempts) != 1 {
		t.Fatalf("v3 retry: %v", err)
	}

	// Concurrent copies, the first append's reply lost: however the
	// copies fare, one payment, and a retry is acknowledged.
	lost.Store(1)
	req := wxsim.V2Request(m.V2Pay(wxsim.PayParams{OutTradeNo: "OU003", TotalFee: 300}))
	if _, err := h.deliver("/wechatpay/v2/notify", req, 8); err != nil {
		t.Fatal(err)
	}
	mustV2Success(t, "OU003 retry", h.v2(req.Body))

	for _, c := range []struct {
		otn string
		fee int64
	}{{"OU001", 100}, {"OU002", 200}, {"OU003", 300}} {
		if evs := h.events(m, c.otn); countType(evs, domain.TypePaymentConfirmed) != 1 || len(evs) != 2 {
			t.Fatalf("%s: events %v", c.otn, types(evs))
		}
		h.mustOrder(m, c.otn, domain.StatusPaid, c.fee, 0)
	}
}

// TestStoreCommitFailure uses the embedded store's own commit hook: its
// COMMIT fails (as on a full or broken disk). Nothing is acknowledged or
// stored; after the disk recovers the retries are recorded once and the
// projections carry on.
func TestStoreCommitFailure(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	hook := func() error {
		if failing.Load() {
			return errInjected
		}
		return nil
	}
	h := startHarness(t, harnessOptions{sqliteOpts: []sqlite.Option{sqlite.WithCommitHook(hook)}})
	m := h.m
	h.placeOrder(m, "CF001", 100)
	h.placeOrder(m, "CF002", 200)
	before := len(h.storeEvents())

	failing.Store(true)
	v2body := m.V2Pay(wxsim.PayParams{OutTradeNo: "CF001", TotalFee: 100})
	v3hdr, v3body := m.V3Pay(wxsim.PayParams{OutTradeNo: "CF002", TotalFee: 200})
	for i := range 3 {
		mustV2Fail(t, fmt.Sprintf("v2 copy %d, commit fails", i), h.v2(v2body), http.StatusServiceUnavailable)
	}
	mustV3Refused(t, "v3, commit fails", h.v3(v3hdr, v3body), http.StatusServiceUnavailable)
	if r := h.placeRaw(orderRequest{MchID: m.MchID, AppID: m.AppID, OutTradeNo: "CF003", TotalFee: 1, Description: "x"}); r.status != http.StatusServiceUnavailable {
		t.Fatalf("placement, commit fails: want 503, got %v", r)
	}
	if after := len(h.storeEvents()); after != before {
		t.Fatalf("%d events stored while every commit failed", after-before)
	}
	if st := h.n.store.(*sqlite.Store).Stats(); st.FailedCommits == 0 {
		t.Fatalf("the hook never failed a commit: %+v", st)
	}

	failing.Store(false)
	mustV2Success(t, "v2 after recovery", h.v2(v2body))
	mustV2Success(t, "v2 again", h.v2(v2body))
	mustV3Success(t, "v3 after recovery", h.v3(m.SignV3(v3body), v3body))
	h.mustOrder(m, "CF001", domain.StatusPaid, 100, 0)
	h.mustOrder(m, "CF002", domain.StatusPaid, 200, 0)
	if n := countStored(h.storeEvents(), domain.TypePaymentConfirmed); n != 2 {
		t.Fatalf("%d PaymentConfirmed stored, want 2", n)
	}
}
