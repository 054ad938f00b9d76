package wxsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
)

// Schedule returns WeChat's documented intervals between notification
// attempts (15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h, 24h4m in
// all, so at most 16 deliveries). A fresh copy each call.
func Schedule() []time.Duration {
	return []time.Duration{
		15 * time.Second, 15 * time.Second, 30 * time.Second, 3 * time.Minute, 10 * time.Minute,
		20 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 60 * time.Minute,
		3 * time.Hour, 3 * time.Hour, 3 * time.Hour, 6 * time.Hour, 6 * time.Hour,
	}
}

// ReplyTimeout is how long WeChat waits for a reply (about 5 s).
const ReplyTimeout = 5 * time.Second

// maxReplyBody is how much of a reply Deliver reads and keeps.
const maxReplyBody = 64 << 10

// ErrNotAcknowledged: every attempt of a delivery was refused or failed.
var ErrNotAcknowledged = errors.New("wxsim: notification not acknowledged")

// Request is one notification to deliver.
type Request struct {
	// Version says how replies are judged: 2 (HTTP 200 and a well-formed
	// SUCCESS return_code) or 3 (HTTP 200 or 204).
	Version int
	Header  http.Header // request headers of the first attempt
	Body    []byte      // the exact body, the same on every attempt
	// Resign, when set, gives the headers for each retry (attempt 2 on),
	// as WeChat re-signs v3 retries with a fresh timestamp; e.g.
	// func() http.Header { return m.SignV3(body) }.
	Resign func() http.Header
}

// V2Request wraps a v2 body (payment or refund) for Deliver.
func V2Request(body []byte) Request {
	h := http.Header{}
	h.Set("Content-Type", "text/xml")
	return Request{Version: 2, Header: h, Body: body}
}

// V3Request wraps a v3 notification for Deliver; retries are re-signed by
// m at its clock.
func (m *Merchant) V3Request(h http.Header, body []byte) Request {
	return Request{Version: 3, Header: h, Body: body, Resign: func() http.Header { return m.SignV3(body) }}
}

// DeliverOptions tune Deliver. The zero value is WeChat's behaviour in real
// time.
type DeliverOptions struct {
	// Schedule lists the waits before attempts 2, 3, ...; nil means
	// Schedule(). There are len(Schedule)+1 attempts at most.
	Schedule []time.Duration
	// Compress divides every wait (a factor of 1000 turns 24 h into 87 s);
	// values <= 1 mean real time.
	Compress float64
	// Sleep waits d (already compressed) or until ctx is done; nil means a
	// timer. Tests pass a no-op or a recorder so nothing really sleeps.
	Sleep func(ctx context.Context, d time.Duration)
	// Copies is how many identical requests each attempt sends at once
	// (WeChat may deliver the same notification from several servers
	// within seconds); < 1 means 1.
	Copies int
	// Timeout bounds each request; 0 means ReplyTimeout.
	Timeout time.Duration
}

// Outcome is what one copy of one attempt got.
type Outcome struct {
	Status   int           // HTTP status; 0 when no reply
	Header   http.Header   // reply headers; nil when no reply
	Body     []byte        // reply body, at most 64 KiB
	Err      error         // transport error or timeout
	Accepted bool          // judged a success by WeChat's rules
	Elapsed  time.Duration // from sending to the end of the reply
}

// Attempt is one delivery attempt.
type Attempt struct {
	N int // 1-based
	// Wait is the nominal (uncompressed) wait before this attempt; 0 for
	// the first.
	Wait     time.Duration
	Copies   []Outcome // one per concurrent copy
	Accepted bool      // at least one copy was accepted
}

// Result is a whole delivery.
type Result struct {
	Attempts  []Attempt // in order
	Delivered bool      // an attempt was accepted
}

// IsV2Success judges a reply to a v2 notification as WeChat does: HTTP 200
// and a body that is a well-formed <xml> message (package wechatpay's
// strict parser: no DOCTYPE, no duplicates; whitespace between elements is
// tolerated) whose return_code is SUCCESS. An empty 200, a 201, or a
// return_code FAIL are failures that make WeChat retry. header is not
// judged: WeChat's rules on the reply's Content-Type are undocumented.
func IsV2Success(status int, header http.Header, body []byte) bool {
	if status != http.StatusOK {
		return false
	}
	f, err := wechatpay.ParseV2(body)
	return err == nil && f["return_code"] == "SUCCESS"
}

// IsV3Success judges a reply to a v3 notification: HTTP 200 or 204; the
// body is ignored (a 200 with {"code":"FAIL"} is a success to WeChat).
func IsV3Success(status int) bool {
	return status == http.StatusOK || status == http.StatusNoContent
}

// Deliver POSTs req to url the way WeChat delivers a notification: each
// attempt sends opts.Copies identical requests at once; if none is
// accepted, it waits the next interval of the schedule (through opts.Sleep,
// compressed by opts.Compress) and tries again, until one is accepted or
// the schedule is exhausted. It returns every attempt's outcomes, and
// ErrNotAcknowledged when no attempt was accepted, or ctx's error when ctx
// ends first. client nil means http.DefaultClient. Safe for concurrent use
// if client is.
func Deliver(ctx context.Context, client *http.Client, url string, req Request, opts DeliverOptions) (Result, error) {
	if req.Version != 2 && req.Version != 3 {
		return Result{}, fmt.Errorf("wxsim: deliver: version %d, want 2 or 3", req.Version)
	}
	if client == nil {
		client = http.DefaultClient
	}
	schedule := opts.Schedule
	if schedule == nil {
		schedule = Schedule()
	}
	sleep := opts.Sleep
	if sleep == nil {
		sleep = timerSleep
	}
	copies := max(opts.Copies, 1)
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = ReplyTimeout
	}
	var res Result
	header := req.Header
	for n := 1; n <= len(schedule)+1; n++ {
		var wait time.Duration
		if n > 1 {
			wait = schedule[n-2]
			d := wait
			if opts.Compress > 1 {
				d = time.Duration(float64(wait) / opts.Compress)
			}
			sleep(ctx, d)
			if req.Resign != nil {
				header = req.Resign()
			}
		}
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("wxsim: deliver: %w", err)
		}
		a := Attempt{N: n, Wait: wait, Copies: make([]Outcome, copies)}
		var wg sync.WaitGroup
		for i := range copies {
			wg.Go(func() { a.Copies[i] = post(ctx, client, url, req.Version, header, req.Body, timeout) })
		}
		wg.Wait()
		for _, o := range a.Copies {
			a.Accepted = a.Accepted || o.Accepted
		}
		res.Attempts = append(res.Attempts, a)
		if a.Accepted {
			res.Delivered = true
			return res, nil
		}
	}
	return res, fmt.Errorf("%w after %d attempts", ErrNotAcknowledged, len(res.Attempts))
}

// post sends one copy and judges the reply.
func post(ctx context.Context, client *http.Client, url string, version int, header http.Header, body []byte, timeout time.Duration) Outcome {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Outcome{Err: err, Elapsed: time.Since(start)}
	}
	r.Header = header.Clone()
	if r.Header == nil {
		r.Header = http.Header{}
	}
	resp, err := client.Do(r)
	if err != nil {
		return Outcome{Err: err, Elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	o := Outcome{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err, Elapsed: time.Since(start)}
	if err == nil {
		if version == 2 {
			o.Accepted = IsV2Success(resp.StatusCode, resp.Header, b)
		} else {
			o.Accepted = IsV3Success(resp.StatusCode)
		}
	}
	return o
}

// timerSleep waits d or until ctx is done.
func timerSleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
