package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/merchant"
	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/sqlite"
)

// loadgen measures how many verified v2 payment notifications per second a
// ledger acknowledges, and with what latency, in two phases per concurrency
// level:
//
//   - distinct: every request is a new, validly signed notification for an
//     order placed beforehand, so every acknowledgement waits for a durable
//     (fsynced, group-committed) append;
//   - duplicate: byte-identical copies of notifications already recorded,
//     which the ledger acknowledges without writing.
//
// Orders are placed and notification bodies signed OUTSIDE the timed window.
// In --duration mode the number of orders a level needs is not known in
// advance, so a level runs in rounds: each round sends a pre-placed pool
// (sized from the rate measured so far); when the pool runs out before the
// duration, the clock stops, more orders are placed, and the clock resumes.
// The reported elapsed time is the sum of the timed rounds only.
//
// Afterwards it checks exactly-once: the PaymentConfirmed events stored for
// the run must be exactly one per distinct notification sent.

func loadgenCommand() *command {
	c := &command{
		name:    "loadgen",
		summary: "measure verified notifies per second and latency (distinct notifications: durable appends; duplicate copies: no write), then check exactly-once",
		usage: "loadgen [--clients 1,16,64] [--duration 5s | --requests N] [--phases distinct,duplicate] " +
			"[--data DIR] [--keep] [--cpuprofile FILE] | --url http://host:port --merchants FILE [--mch-id ID]",
	}
	c.run = func(ctx context.Context, env *cliEnv, args []string) error {
		fs := newFlagSet(c, env)
		var o lgOptions
		fs.StringVar(&o.url, "url", "", "target a running `ledger serve` at this base URL (default: start an in-process ledger on the embedded store)")
		fs.StringVar(&o.merchants, "merchants", env.getenv("LEDGER_MERCHANTS"), "with --url: the server's merchant config, for the keys to sign with (env LEDGER_MERCHANTS)")
		fs.StringVar(&o.mchID, "mch-id", "", "with --url: the merchant to use (default: the first in --merchants)")
		fs.StringVar(&o.data, "data", "", "in-process ledger: data folder (default: a new temporary folder, removed afterwards unless --keep)")
		fs.BoolVar(&o.keep, "keep", false, "keep the temporary data folder afterwards")
		fs.DurationVar(&o.duration, "duration", 5*time.Second, "timed length of each phase at each concurrency level")
		fs.IntVar(&o.requests, "requests", 0, "send exactly N requests per phase and level instead of running for --duration")
		clients := fs.String("clients", "1,16,64", "comma-separated concurrency levels (concurrent HTTP clients)")
		phases := fs.String("phases", "distinct,duplicate", "phases to run: distinct, duplicate or both")
		fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile to FILE, from the first timed window to the last (setup and the first placement of orders excluded; in --duration mode later placements between rounds are in it)")
		fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-request timeout")
		fs.IntVar(&o.placers, "placers", 64, "concurrent order placements while preparing (untimed)")
		verbose := fs.Bool("v", false, "show the in-process server's log")
		if err := parse(fs, args); err != nil {
			return err
		}
		var err error
		if o.clients, err = lgParseClients(*clients); err != nil {
			return err
		}
		for _, p := range strings.Split(*phases, ",") {
			switch p = strings.TrimSpace(p); p {
			case lgDistinct:
				o.distinct = true
			case lgDuplicate:
				o.duplicate = true
			default:
				return fmt.Errorf("%w: --phases: unknown phase %q (distinct, duplicate)", errUsage, p)
			}
		}
		switch {
		case o.requests < 0:
			return fmt.Errorf("%w: --requests must be positive", errUsage)
		case o.requests == 0 && o.duration <= 0:
			return fmt.Errorf("%w: --duration must be positive", errUsage)
		case o.url != "" && o.merchants == "":
			return fmt.Errorf("%w: --url needs --merchants (the keys to sign notifications with)", errUsage)
		case o.url != "" && (o.data != "" || o.keep):
			return fmt.Errorf("%w: --data and --keep are for the in-process ledger, not --url", errUsage)
		case o.placers < 1:
			return fmt.Errorf("%w: --placers must be at least 1", errUsage)
		}
		o.logOut = io.Discard
		if *verbose {
			o.logOut = env.stderr
		}
		return runLoadgen(ctx, env, o)
	}
	return c
}

const (
	lgDistinct  = "distinct"
	lgDuplicate = "duplicate"
)

type lgOptions struct {
	url, merchants, mchID string
	data                  string
	keep                  bool
	duration              time.Duration
	requests              int
	clients               []int
	distinct, duplicate   bool
	cpuprofile            string
	timeout               time.Duration
	placers               int
	logOut                io.Writer
}

func lgParseClients(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 4096 {
			return nil, fmt.Errorf("%w: --clients: %q is not a number of clients (1-4096)", errUsage, p)
		}
		out = append(out, n)
	}
	return out, nil
}

// lgNote is one signed v2 payment notification for a placed order.
type lgNote struct {
	outTradeNo, txID string
	body             []byte
}

// loadgen is one run.
type loadgen struct {
	o      lgOptions
	out    io.Writer
	m      *wxsim.Merchant
	base   string // target base URL
	api    *apiClient
	client *http.Client
	node   *node               // in-process only
	stats  func() sqlite.Stats // nil when the store keeps no stats (or --url)

	runID   string // makes out_trade_no unique across runs
	runTx   int64  // makes transaction ids unique across runs
	seq     atomic.Int64
	spare   []lgNote // placed and signed, never sent
	sent    []lgNote // distinct notifications sent (the exactly-once check expects each once)
	acked   []lgNote // distinct notifications acknowledged: the duplicates replay these
	success []byte

	// scan follows the store's log (in-process) to count what was written.
	scanAfter eventstore.Position
	scanTx    map[string]int // mch_id/transaction id -> PaymentConfirmed events

	lastRate    float64 // distinct notifies/s of the previous level
	lastClients int

	profile   *os.File // --cpuprofile
	profiling bool
}

// startProfile starts the CPU profile (--cpuprofile) at the first timed
// window, so that setup and the first placement of orders stay out of it.
func (lg *loadgen) startProfile() error {
	if lg.profile == nil || lg.profiling {
		return nil
	}
	if err := pprof.StartCPUProfile(lg.profile); err != nil {
		return err
	}
	lg.profiling = true
	return nil
}

// stopProfile ends the CPU profile and closes its file; idempotent.
func (lg *loadgen) stopProfile() error {
	if lg.profile == nil {
		return nil
	}
	if lg.profiling {
		pprof.StopCPUProfile()
	}
	err := lg.profile.Close()
	lg.profile, lg.profiling = nil, false
	return err
}

// lgPhase is one row of the report.
type lgPhase struct {
	phase      string
	clients    int
	requests   int
	errors     int
	elapsed    time.Duration
	lat        []time.Duration
	rounds     int
	commits    uint64
	appends    uint64
	catchup    time.Duration // in-process: read model caught up this long after the window
	cpu        time.Duration // CPU time of this process (user+system) during the timed windows
	errSamples []string
}

func (r *lgPhase) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

func runLoadgen(ctx context.Context, env *cliEnv, o lgOptions) (err error) {
	lg := &loadgen{o: o, out: env.stdout, success: wechatpay.V2Success(), scanTx: map[string]int{}}
	lg.runID = strconv.FormatInt(time.Now().UnixNano()/1e3, 36) // 11 characters, unique per run
	lg.runTx = rand.Int64N(1e10)
	maxClients := slices.Max(o.clients)

	if o.url != "" {
		if err := lg.setupRemote(ctx, env); err != nil {
			return err
		}
	} else {
		dir := o.data
		if dir == "" {
			tmp, err := os.MkdirTemp("", "ledger-loadgen-")
			if err != nil {
				return err
			}
			dir = tmp
			if !o.keep {
				defer os.RemoveAll(tmp)
			}
		}
		if err := lg.setupLocal(ctx, dir); err != nil {
			return err
		}
		defer func() {
			cerr := lg.node.Close(context.Background())
			if err == nil && cerr != nil {
				err = fmt.Errorf("closing the ledger: %w", cerr)
			}
			if o.data != "" || o.keep {
				fmt.Fprintf(lg.out, "data kept in %s\n", dir)
			}
		}()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 0 // no global limit
	tr.MaxIdleConnsPerHost = max(maxClients, o.placers) + 8
	tr.DisableCompression = true
	lg.client = &http.Client{Transport: tr, Timeout: o.timeout}
	lg.api = &apiClient{base: lg.base, http: lg.client}
	defer tr.CloseIdleConnections()

	fmt.Fprintf(lg.out, "loadgen: target %s (%s), merchant %s, GOMAXPROCS %d, %s\n",
		lg.base, lg.storeName(), lg.m.MchID, runtime.GOMAXPROCS(0), lgLoadAverage())
	if o.requests > 0 {
		fmt.Fprintf(lg.out, "each phase: %d requests per level, clients %v\n\n", o.requests, o.clients)
	} else {
		fmt.Fprintf(lg.out, "each phase: %s per level (timed rounds only), clients %v\n\n", o.duration, o.clients)
	}

	if o.cpuprofile != "" {
		// Created now to fail early; started at the first timed window.
		if lg.profile, err = os.Create(o.cpuprofile); err != nil {
			return err
		}
		defer func() {
			if perr := lg.stopProfile(); err == nil && perr != nil {
				err = perr
			}
		}()
	}

	var results []*lgPhase
	if o.distinct {
		for _, c := range o.clients {
			r, err := lg.distinctPhase(ctx, c)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	if o.duplicate {
		if len(lg.acked) == 0 {
			// Nothing recorded yet (--phases duplicate): record some first,
			// untimed.
			n := o.requests
			if n == 0 {
				n = 1000
			}
			if _, err := lg.round(ctx, maxClients, n, 0, nil); err != nil {
				return err
			}
		}
		for _, c := range o.clients {
			r, err := lg.duplicatePhase(ctx, c)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	if err := lg.stopProfile(); err != nil {
		return err
	}
	lg.report(results)
	if err := lg.verify(ctx); err != nil {
		return err
	}
	nerr := 0
	for _, r := range results {
		nerr += r.errors
	}
	if nerr > 0 {
		return fmt.Errorf("%d requests did not get the exact SUCCESS reply", nerr)
	}
	return nil
}

// setupLocal creates a sandbox merchant and starts an in-process ledger.
func (lg *loadgen) setupLocal(ctx context.Context, dir string) error {
	var logger *slog.Logger
	if lg.o.logOut == io.Discard {
		logger = slog.New(slog.DiscardHandler)
	} else {
		logger = slog.New(slog.NewTextHandler(lg.o.logOut, nil))
	}
	m, n, err := startSandbox(ctx, dir, logger)
	if err != nil {
		return err
	}
	lg.node, lg.m, lg.base = n, m, n.URL()
	if s, ok := n.store.(interface{ Stats() sqlite.Stats }); ok {
		lg.stats = s.Stats
	}
	// Start the exactly-once count after whatever the folder already held.
	if err := lg.scan(ctx); err != nil {
		return err
	}
	clear(lg.scanTx)
	return nil
}

// setupRemote loads the merchant's keys and checks the server answers.
func (lg *loadgen) setupRemote(ctx context.Context, env *cliEnv) error {
	reg, err := merchant.Load(lg.o.merchants, env.getenv)
	if err != nil {
		return err
	}
	var mm *merchant.Merchant
	if lg.o.mchID == "" {
		all := reg.All()
		if len(all) == 0 {
			return fmt.Errorf("%w: %s lists no merchant", errUsage, lg.o.merchants)
		}
		mm = all[0]
	} else {
		var ok bool
		if mm, ok = reg.Get(lg.o.mchID); !ok {
			return fmt.Errorf("%w: merchant %s is not in %s", errUsage, lg.o.mchID, lg.o.merchants)
		}
	}
	if mm.APIKey.IsZero() {
		return fmt.Errorf("%w: merchant %s has no v2 API key to sign with", errUsage, mm.MchID)
	}
	lg.m = &wxsim.Merchant{MchID: mm.MchID, AppID: mm.AppID, APIKey: mm.APIKey.Reveal()}
	lg.base = strings.TrimRight(lg.o.url, "/")
	hc := newAPIClient(lg.base)
	defer hc.http.CloseIdleConnections() // its own transport, used only here
	if _, err := hc.do(ctx, http.MethodGet, "/healthz", nil, nil); err != nil {
		return fmt.Errorf("ledger at %s: %w", lg.base, err)
	}
	return nil
}

func (lg *loadgen) storeName() string {
	if lg.node != nil {
		return "in-process, store " + lg.node.store.Features().Name
	}
	return "remote"
}

// prepare returns n notifications for placed orders: the spares first, then
// new orders, placed concurrently, with their bodies signed. Untimed.
func (lg *loadgen) prepare(ctx context.Context, n int) ([]lgNote, error) {
	take := min(n, len(lg.spare))
	pool := append([]lgNote(nil), lg.spare[:take]...)
	lg.spare = lg.spare[take:]
	need := n - take
	if need <= 0 {
		return pool, nil
	}
	fresh := make([]lgNote, need)
	base := lg.seq.Add(int64(need)) - int64(need)
	for i := range fresh {
		k := base + int64(i) + 1
		fresh[i].outTradeNo = fmt.Sprintf("LG%s-%d", lg.runID, k)
		fresh[i].txID = fmt.Sprintf("4200%010d%014d", lg.runTx, k) // 28 digits, as WeChat's
	}
	err := lgForEach(ctx, lg.o.placers, need, func(ctx context.Context, i int) error {
		nt := &fresh[i]
		fee := 100 + int64(i%9900)
		st, err := lg.api.placeOrder(ctx, orderRequest{MchID: lg.m.MchID, AppID: lg.m.AppID,
			OutTradeNo: nt.outTradeNo, TotalFee: fee, Description: "loadgen order"})
		if err == nil && st != http.StatusCreated {
			err = fmt.Errorf("placing %s: want 201 Created, got %d", nt.outTradeNo, st)
		}
		if err != nil {
			return err
		}
		// Sign here too: spread over the placers, and untimed.
		nt.body = lg.m.V2Pay(wxsim.PayParams{OutTradeNo: nt.outTradeNo, TransactionID: nt.txID, TotalFee: fee})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("placing orders: %w", err)
	}
	return append(pool, fresh...), nil
}

// lgForEach calls fn(ctx, i) for every i in [0, n) on at most workers
// goroutines. The first error cancels ctx for the others, stops the work and
// is returned.
func lgForEach(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
	var (
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// warm opens c keep-alive connections so that the timed window reuses them.
func (lg *loadgen) warm(ctx context.Context, c int) {
	var wg sync.WaitGroup
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lg.api.do(ctx, http.MethodGet, "/healthz", nil, nil)
		}()
	}
	wg.Wait()
}

// lgRound is one timed round.
type lgRound struct {
	sent, errors int
	elapsed      time.Duration
	cpu          time.Duration // process CPU time (user+system) during the window
	lat          []time.Duration
	okIdx        []int // indexes of the bodies acknowledged (distinct rounds)
	errSamples   []string
}

// send POSTs one v2 notification and judges the reply strictly: HTTP 200 and
// exactly the SUCCESS body.
func (lg *loadgen) send(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, lg.base+"/wechatpay/v2/notify", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := lg.client.Do(req)
	if err != nil {
		return err
	}
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(reply, lg.success) {
		return fmt.Errorf("HTTP %d %q", resp.StatusCode, lgClip(reply))
	}
	return nil
}

func lgClip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// timed runs c clients, each sending body(i) for i = 0, 1, 2... (shared)
// until body returns nil or the window (0: none) has passed. It returns the
// round's results; latencies cover the HTTP exchange only. wantOK records
// the indexes acknowledged (okIdx).
func (lg *loadgen) timed(ctx context.Context, c int, window time.Duration, body func(i int) []byte, wantOK bool) lgRound {
	lg.warm(ctx, c)
	var deadline time.Time // zero: none
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		res   lgRound
		start = make(chan struct{})
	)
	hasDeadline := window > 0
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			var ok []int
			var errs int
			var samples []string
			<-start
			for ctx.Err() == nil {
				t0 := time.Now()
				if hasDeadline && !t0.Before(deadline) {
					break
				}
				i := int(next.Add(1) - 1)
				b := body(i)
				if b == nil {
					break
				}
				err := lg.send(ctx, b)
				lat = append(lat, time.Since(t0))
				if err != nil {
					errs++
					if len(samples) < 3 {
						samples = append(samples, err.Error())
					}
				} else if wantOK {
					ok = append(ok, i)
				}
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.okIdx = append(res.okIdx, ok...)
			res.errors += errs
			if len(res.errSamples) < 5 {
				res.errSamples = append(res.errSamples, samples...)
			}
			mu.Unlock()
		}()
	}
	cpu0 := processCPU()
	t0 := time.Now()
	deadline = t0.Add(window) // written before the workers start
	close(start)
	wg.Wait()
	res.elapsed = time.Since(t0)
	res.cpu = processCPU() - cpu0
	res.sent = len(res.lat)
	return res
}

// round sends n distinct notifications (placing their orders first) with c
// clients, stopping early when window (0: none) has passed. Unsent ones are
// kept as spares. If into is not nil the round is measured into it.
func (lg *loadgen) round(ctx context.Context, c, n int, window time.Duration, into *lgPhase) (lgRound, error) {
	pool, err := lg.prepare(ctx, n)
	if err != nil {
		return lgRound{}, err
	}
	r, err := lg.measure(ctx, c, window, func(i int) []byte {
		if i >= len(pool) {
			return nil
		}
		return pool[i].body
	}, true, into)
	if err != nil {
		return r, err
	}
	// Every index below sent was sent (an index is taken only to be sent).
	lg.sent = append(lg.sent, pool[:r.sent]...)
	lg.spare = append(lg.spare, pool[r.sent:]...)
	for _, i := range r.okIdx {
		lg.acked = append(lg.acked, pool[i])
	}
	return r, nil
}

// measure runs one timed window (see timed). If into is not nil the CPU
// profile is running during it, and into gets the window's numbers: the
// round itself, the store's fsyncs and appends during it, and how long after
// it the read model caught up (the worst of its rounds).
func (lg *loadgen) measure(ctx context.Context, c int, window time.Duration, body func(i int) []byte, wantOK bool, into *lgPhase) (lgRound, error) {
	if into != nil {
		if err := lg.startProfile(); err != nil {
			return lgRound{}, err
		}
	}
	var before sqlite.Stats
	if lg.stats != nil {
		before = lg.stats()
	}
	r := lg.timed(ctx, c, window, body, wantOK)
	windowEnd := time.Now()
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if into == nil {
		return r, nil
	}
	into.add(r)
	if lg.stats != nil {
		after := lg.stats()
		into.commits += after.Commits - before.Commits
		into.appends += after.Appends - before.Appends
	}
	d, err := lg.catchUp(ctx, windowEnd)
	if err != nil {
		return r, err
	}
	into.catchup = max(into.catchup, d)
	return r, nil
}

func (p *lgPhase) add(r lgRound) {
	p.rounds++
	p.requests += r.sent
	p.errors += r.errors
	p.elapsed += r.elapsed
	p.cpu += r.cpu
	p.lat = append(p.lat, r.lat...)
	if len(p.errSamples) < 5 {
		p.errSamples = append(p.errSamples, r.errSamples...)
	}
}

// distinctPhase: new notifications only, each one a durable append.
func (lg *loadgen) distinctPhase(ctx context.Context, c int) (*lgPhase, error) {
	res := &lgPhase{phase: lgDistinct, clients: c}
	if lg.o.requests > 0 {
		if _, err := lg.round(ctx, c, lg.o.requests, 0, res); err != nil {
			return nil, err
		}
	} else {
		// First round: about a second's worth at a guessed rate, then
		// sized from the rate measured so far.
		guess := float64(min(150*c, 3000))
		if lg.lastRate > 0 {
			guess = lg.lastRate * min(float64(c)/float64(lg.lastClients), 4)
		}
		n := int(guess*min(1, lg.o.duration.Seconds())) + 4*c
		for {
			remaining := lg.o.duration - res.elapsed
			if remaining < lg.o.duration/20 || remaining < 10*time.Millisecond {
				break
			}
			if res.rounds > 0 {
				n = int(res.rate()*remaining.Seconds()*1.15) + 2*c
			}
			r, err := lg.round(ctx, c, n, remaining, res)
			if err != nil {
				return nil, err
			}
			if r.sent == 0 {
				return nil, errors.New("a round sent nothing")
			}
		}
	}
	lg.lastRate, lg.lastClients = res.rate(), c
	return res, nil
}

// duplicatePhase: byte-identical copies of recorded notifications, cycled.
func (lg *loadgen) duplicatePhase(ctx context.Context, c int) (*lgPhase, error) {
	res := &lgPhase{phase: lgDuplicate, clients: c}
	recorded := lg.acked
	if len(recorded) == 0 {
		return nil, errors.New("no recorded lgNote to duplicate")
	}
	// Start at a random place so that levels do not replay the same few.
	off := rand.IntN(len(recorded))
	var window time.Duration
	limit := lg.o.requests
	if limit == 0 {
		window = lg.o.duration
	}
	_, err := lg.measure(ctx, c, window, func(i int) []byte {
		if limit > 0 && i >= limit {
			return nil
		}
		return recorded[(off+i)%len(recorded)].body
	}, false, res)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// scan reads the store's log (in-process) from where it last stopped,
// counting PaymentConfirmed events by transaction id.
func (lg *loadgen) scan(ctx context.Context) error {
	if lg.node == nil {
		return nil
	}
	var err error
	lg.scanAfter, err = walkEvents(ctx, lg.node.store, lg.scanAfter, func(r eventstore.RecordedEvent) error {
		key, ok, err := paymentKey(r)
		if ok {
			lg.scanTx[key]++
		}
		return err
	})
	return err
}

// catchUp (in-process) returns how long after windowEnd the read model had
// applied everything in the store: whether the projections keep pace.
func (lg *loadgen) catchUp(ctx context.Context, windowEnd time.Time) (time.Duration, error) {
	if lg.node == nil {
		return 0, nil
	}
	if err := lg.scan(ctx); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := lg.node.runner.WaitFor(wctx, lg.scanAfter); err != nil {
		return 0, fmt.Errorf("waiting for the read model: %w", err)
	}
	return time.Since(windowEnd), nil
}

func (lg *loadgen) report(results []*lgPhase) {
	tw := tabwriter.NewWriter(lg.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PHASE\tCLIENTS\tREQUESTS\tERRORS\tSECONDS\tNOTIFIES/S\tP50\tP99\tMAX\tCPU/REQ\tFSYNCS\tAPPENDS/FSYNC\tREADMODEL LAG\t")
	for _, r := range results {
		slices.Sort(r.lat)
		fsyncs, per, lag := "-", "-", "-"
		if lg.stats != nil {
			fsyncs = strconv.FormatUint(r.commits, 10)
			if r.commits > 0 {
				per = fmt.Sprintf("%.1f", float64(r.appends)/float64(r.commits))
			}
		}
		if lg.node != nil {
			lag = lgDur(r.catchup)
		}
		cpu := "-"
		if r.requests > 0 && r.cpu > 0 {
			cpu = lgDur(r.cpu / time.Duration(r.requests))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.phase, r.clients, r.requests, r.errors,
			r.elapsed.Seconds(), r.rate(), lgDur(lgPercentile(r.lat, 0.50)), lgDur(lgPercentile(r.lat, 0.99)), lgDur(lgPercentile(r.lat, 1)),
			cpu, fsyncs, per, lag)
	}
	tw.Flush()
	fmt.Fprintln(lg.out)
	for _, r := range results {
		for _, s := range r.errSamples {
			fmt.Fprintf(lg.out, "error (%s, %d clients): %s\n", r.phase, r.clients, s)
		}
	}
	if lg.o.requests == 0 {
		fmt.Fprintln(lg.out, "distinct levels run in timed rounds; orders are placed and bodies signed between rounds, off the clock")
	}
	if lg.node != nil {
		fmt.Fprintln(lg.out, "CPU/REQ: this process's CPU time (user+system, load generator AND ledger) per request: less sensitive to a busy machine than NOTIFIES/S")
		fmt.Fprintln(lg.out, "READMODEL LAG: how long after the timed window the projections had applied every event (the worst round)")
	} else {
		fmt.Fprintln(lg.out, "CPU/REQ: the load generator's own CPU time per request (the ledger runs elsewhere)")
	}
}

// lgPercentile returns the q-quantile of sorted latencies (nearest rank).
func lgPercentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func lgDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0fµs", float64(d)/1e3)
}

// verify checks exactly-once: one PaymentConfirmed event per distinct
// notification sent, none other.
func (lg *loadgen) verify(ctx context.Context) error {
	want := len(lg.sent)
	var got, distinct int
	var how string
	if lg.node != nil {
		if err := lg.scan(ctx); err != nil {
			return err
		}
		for _, k := range lg.scanTx {
			got += k
		}
		distinct = len(lg.scanTx)
		for _, nt := range lg.sent {
			if lg.scanTx[lg.m.MchID+"/"+nt.txID] != 1 {
				return fmt.Errorf("exactly-once violated: transaction %s of order %s has %d PaymentConfirmed events",
					nt.txID, nt.outTradeNo, lg.scanTx[lg.m.MchID+"/"+nt.txID])
			}
		}
		how = "read from the store's log"
	} else {
		var err error
		if got, distinct, err = lg.countRemote(ctx); err != nil {
			return err
		}
		how = fmt.Sprintf("read through the events API of the %d orders", want)
	}
	fmt.Fprintf(lg.out, "exactly-once: %d distinct notifications sent, %d PaymentConfirmed events for %d transactions (%s): ",
		want, got, distinct, how)
	if got != want || distinct != want {
		fmt.Fprintln(lg.out, "MISMATCH")
		return fmt.Errorf("exactly-once violated: %d PaymentConfirmed events for %d distinct notifications", got, want)
	}
	fmt.Fprintln(lg.out, "OK")
	return nil
}

// countRemote reads every sent order's events through the API.
func (lg *loadgen) countRemote(ctx context.Context) (got, distinct int, err error) {
	var total, distinctN atomic.Int64
	err = lgForEach(ctx, lg.o.placers, len(lg.sent), func(ctx context.Context, i int) error {
		nt := lg.sent[i]
		evs, err := lg.api.events(ctx, lg.m.MchID, nt.outTradeNo)
		if err != nil {
			return fmt.Errorf("events of %s: %w", nt.outTradeNo, err)
		}
		n, mine := 0, 0
		for _, e := range evs.Events {
			if e.Type != domain.TypePaymentConfirmed {
				continue
			}
			n++
			if ev, err := domain.Unmarshal(e.Type, e.Data); err == nil && ev.(domain.PaymentConfirmed).TransactionID == nt.txID {
				mine++
			}
		}
		total.Add(int64(n))
		if mine > 0 {
			distinctN.Add(1)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return int(total.Load()), int(distinctN.Load()), nil
}

// lgLoadAverage reads /proc/loadavg (Linux) to show how busy the machine is.
func lgLoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load average unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load average unknown"
	}
	return "load average " + strings.Join(f[:3], " ")
}

// processCPU is the CPU time (user+system) this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
