// Package esdb is the EventStoreDB backend of the eventstore contract, and
// the only package of the ledger that imports
// github.com/EventStore/EventStore-Client-Go (v4). It passes the same
// conformance suite (eventstore/storetest) as the embedded store, with these
// Features:
//
//   - DensePositions false: a position is EventStoreDB's (commit, prepare)
//     log position, a byte offset, not a counter.
//   - DetectsContentConflict true, within a stream: before writing, Append
//     reads the stream. The same IDs already stored where the append is
//     aimed, with the same type, data and metadata, make it a no-op
//     (Duplicate); an ID of the batch stored with other content, or stored
//     elsewhere in the stream, is ErrEventIDConflict. The server itself
//     dedupes by ID only, only where the append is aimed, and would store a
//     second copy when the expected revision equals the stream's revision.
//   - GlobalIDUniqueness false: nothing stops an ID of one stream from being
//     used in another.
//   - Persistent true.
//
// The price of that read is one extra round trip per append, growing with
// the stream's length, plus a short read-back of the appended events (for
// their exact position and content): fine for the ledger's short per-order
// streams.
//
// Client quirks handled here (see README.md): the client defaults an unset
// expected revision to Any, so it is always set; it invents random event IDs
// when the ID is zero, so zero IDs are refused; its FromError returns false
// when the error IS one of its own, so errors are recognised with errors.As
// and (*esdb.Error).Code only; a catch-up subscription to $all starts at the
// END unless told otherwise, so the start is always explicit; the client
// never resubscribes after a drop; and it closes itself for good when node
// discovery fails, after which it is rebuilt.
package esdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderledger/orderledger/eventstore"
)

// Option configures Open.
type Option func(*options)

type options struct {
	namespace       string
	logger          *slog.Logger
	appendAttempts  int
	retryBackoff    time.Duration
	closeGrace      time.Duration
	autoResubscribe bool
	searchWindow    int
	checkpointMult  int
	maxAppendSize   int
}

// WithStreamNamespace prefixes every stream name with ns on the server, and
// confines ReadAll and Subscribe to streams in that namespace (the prefix is
// stripped from what the store returns). It lets several ledgers, or test
// runs, share one EventStoreDB without seeing each other. Empty by default.
func WithStreamNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithLogger receives the client library's log lines (debug and info at
// slog.LevelDebug). By default they are discarded.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithAppendAttempts bounds how often Append tries when the server answers
// NotLeader or Unavailable or the connection breaks (default 4). Retrying is
// safe because the event IDs are the same every time.
func WithAppendAttempts(n int) Option { return func(o *options) { o.appendAttempts = max(1, n) } }

// WithRetryBackoff is the first pause between attempts; it doubles up to 2 s
// (default 50 ms).
func WithRetryBackoff(d time.Duration) Option { return func(o *options) { o.retryBackoff = d } }

// WithCloseGrace is how long Close lets calls in flight finish before it
// cancels them (default 5 s).
func WithCloseGrace(d time.Duration) Option { return func(o *options) { o.closeGrace = d } }

// WithAutoResubscribe makes subscriptions resubscribe by themselves when the
// server drops them, from the last position they handed out, so nothing is
// skipped or repeated; Next then keeps waiting (until its context ends)
// while the server is away instead of returning ErrUnavailable. By default a
// drop makes Next return ErrUnavailable and the caller resubscribes from its
// last checkpoint.
func WithAutoResubscribe(on bool) Option { return func(o *options) { o.autoResubscribe = on } }

// WithCheckpointInterval sets how often a filtered subscription reports
// progress through events the filter skipped: every window x multiplier
// events the server looked at (defaults 32 and 1, the client's defaults).
func WithCheckpointInterval(window, multiplier int) Option {
	return func(o *options) { o.searchWindow, o.checkpointMult = max(1, window), max(1, multiplier) }
}

// WithMaxAppendSize is the server's MaxAppendSize setting (default
// DefaultMaxAppendSize, the server's default). Larger appends are refused
// with eventstore.ErrInvalidArgument before anything is sent, because the
// server's own refusal reaches the client as an unclassified error. 0 turns
// the check off.
func WithMaxAppendSize(n int) Option { return func(o *options) { o.maxAppendSize = n } }

// Store is an eventstore.Store on EventStoreDB. It is safe for concurrent
// use.
type Store struct {
	cfg  esdbclient.Configuration // parsed once; each client gets a copy
	opts options

	// base is the parent of every call's context; Close cancels it after
	// the grace period.
	base       context.Context
	cancelBase context.CancelFunc

	// mu guards cur, clients, closed and subs.
	mu      sync.Mutex
	cur     *conn
	clients int // clients built so far (rebuilds + 1)
	closed  bool
	subs    map[*subscription]struct{}

	closeOnce sync.Once
}

var _ eventstore.Store = (*Store)(nil)

// Open connects to the EventStoreDB node or cluster of connString (the
// client's format, e.g. "esdb://127.0.0.1:2113?tls=false"; the KurrentDB
// schemes kurrentdb:// and kdb:// are accepted as synonyms) and checks that
// it answers within ctx. A malformed connection string fails with
// eventstore.ErrInvalidArgument, an unreachable server with
// eventstore.ErrUnavailable.
func Open(ctx context.Context, connString string, opts ...Option) (*Store, error) {
	o := options{
		appendAttempts: 4,
		retryBackoff:   50 * time.Millisecond,
		closeGrace:     5 * time.Second,
		searchWindow:   32,
		checkpointMult: 1,
		maxAppendSize:  DefaultMaxAppendSize,
	}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := esdbclient.ParseConnectionString(normalizeScheme(connString))
	if err != nil {
		return nil, fmt.Errorf("esdb: open: %w: %w", eventstore.ErrInvalidArgument, err)
	}
	cfg.Logger = clientLogger(o.logger)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("esdb: open: %w: %w", eventstore.ErrInvalidArgument, err)
	}
	base, cancel := context.WithCancel(context.Background())
	s := &Store{cfg: *cfg, opts: o, base: base, cancelBase: cancel, subs: map[*subscription]struct{}{}}

	c, err := s.acquire()
	if err != nil {
		cancel()
		return nil, err
	}
	err = c.waitReady(ctx)
	c.release()
	if err != nil {
		// The first connection attempt may still be running inside the
		// client: do not make the caller wait for it.
		go s.Close()
		return nil, fmt.Errorf("esdb: open %s: %w: %w", cfg.Address, eventstore.ErrUnavailable, err)
	}
	return s, nil
}

// normalizeScheme maps the KurrentDB connection-string schemes, which the v4
// client does not know, to its esdb schemes.
func normalizeScheme(connString string) string {
	for _, p := range []struct{ from, to string }{
		{"kurrentdb+discover://", "esdb+discover://"},
		{"kdb+discover://", "esdb+discover://"},
		{"kurrentdb://", "esdb://"},
		{"kdb://", "esdb://"},
	} {
		if rest, ok := strings.CutPrefix(connString, p.from); ok {
			return p.to + rest
		}
	}
	return connString
}

// clientLogger routes the client's log lines to l (or nowhere).
func clientLogger(l *slog.Logger) esdbclient.LoggingFunc {
	if l == nil {
		return esdbclient.NoopLogging()
	}
	return func(level esdbclient.LogLevel, format string, args ...any) {
		lv := slog.LevelDebug
		switch level {
		case esdbclient.LogWarn:
			lv = slog.LevelWarn
		case esdbclient.LogError:
			lv = slog.LevelError
		}
		l.Log(context.Background(), lv, "esdb client: "+fmt.Sprintf(format, args...))
	}
}

// Features reports what this backend promises; see the package comment.
func (s *Store) Features() eventstore.Features {
	return eventstore.Features{
		Name:                   "esdb",
		DensePositions:         false,
		DetectsContentConflict: true,
		GlobalIDUniqueness:     false,
		Persistent:             true,
	}
}

// Close ends every subscription, lets calls in flight finish for the grace
// period (then cancels them) and closes the client. Later calls fail with
// eventstore.ErrClosed. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		c := s.cur
		s.cur = nil
		subs := s.subs
		s.subs = nil
		s.mu.Unlock()

		for sub := range subs {
			sub.shutdown(eventstore.ErrClosed)
		}
		if c == nil {
			s.cancelBase()
			return
		}
		if !c.drain(s.opts.closeGrace) {
			s.cancelBase()
			if !c.drain(2 * time.Second) {
				// A call is stuck inside the client (see conn); closing the
				// client now could make it panic. Leave it to the GC.
				return
			}
		}
		s.cancelBase()
		c.close()
	})
	return nil
}

// acquire returns the current client, rebuilding it if it closed itself,
// and counts the caller in until release.
func (s *Store) acquire() (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, eventstore.ErrClosed
	}
	if s.cur == nil || s.cur.isDead() || s.cur.isRetired() {
		if old := s.cur; old != nil && !old.isDead() {
			// Retired: close it once its calls and subscriptions are done.
			// A dead client is never closed: calls stuck in it could panic;
			// its connection state machine has already ended.
			go old.closeWhenDrained()
		}
		c, err := newConn(s.cfg)
		if err != nil {
			return nil, fmt.Errorf("esdb: %w: %w", eventstore.ErrInvalidArgument, err)
		}
		s.cur = c
		s.clients++
	}
	s.cur.inflight.Add(1)
	return s.cur, nil
}

// call runs fn with the current client once it is connected. fn runs on its
// own goroutine so that the caller can leave when ctx ends or the client
// dies even if fn is stuck inside the client (its result is then dropped).
// After fn: a client that closed itself is dead; after Unavailable the
// client is retired (the next call builds a fresh one, which connects at
// once instead of waiting out gRPC's reconnect backoff); after NotLeader or
// a deadline it is probed, and calls wait until it answers again.
func call[T any](s *Store, ctx context.Context, fn func(ctx context.Context, c *conn) (T, error)) (T, error) {
	var zero T
	c, err := s.acquire()
	if err != nil {
		return zero, err
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.base, cancel)
	defer func() { stop(); cancel() }()

	if err := c.waitReady(ctx); err != nil {
		c.release()
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn(ctx, c)
		switch {
		case closedClient(err):
			c.markDead()
		case isUnavailable(err):
			c.retire()
		case transient(err) && ctx.Err() == nil:
			c.reprobe()
		}
		c.release()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-c.dead:
	case <-ctx.Done():
	}
	select {
	case r := <-done: // finished after all
		return r.v, r.err
	default:
	}
	if ctx.Err() != nil {
		return zero, ctx.Err()
	}
	return zero, errClientDied
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// sleep waits d or until ctx or the store ends.
func (s *Store) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.base.Done():
		return eventstore.ErrClosed
	}
}

func (s *Store) backoff(attempt int) time.Duration {
	d := s.opts.retryBackoff << min(attempt, 10)
	return min(d, 2*time.Second)
}

// retry runs op up to attempts times, pausing s.backoff between attempts,
// for as long as it fails with an error that again accepts and ctx lives.
// It returns op's last result; exhausted is true when it stopped on an
// error again accepted, because the attempts ran out or a pause was cut
// short (err then also holds why).
func retry[T any](s *Store, ctx context.Context, attempts int, again func(error) bool, op func() (T, error)) (v T, exhausted bool, err error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if serr := s.sleep(ctx, s.backoff(attempt-1)); serr != nil {
				return v, true, errors.Join(err, serr)
			}
		}
		v, err = op()
		if err == nil || !again(err) || ctx.Err() != nil {
			return v, false, err
		}
		if attempt+1 >= attempts {
			return v, true, err
		}
	}
}

// errClientDied: the client closed itself (node discovery failed) while the
// call was waiting in it. The call may or may not have reached the server.
var errClientDied = errors.New("esdb: client closed itself after failed node discovery")

// conn is one esdb client and what the adapter knows about its health.
//
// The client serves every call through one unbuffered channel read by a
// connection state machine. When node discovery fails the state machine
// sets a closed flag and returns, and calls that were already blocked
// sending on that channel stay blocked forever; and after Client.Close
// closed the channel, a call that reports an error through it panics. So:
//   - calls wait at a gate while a probe (GetServerVersion, which only needs
//     a connection) runs after a transport error, instead of piling into the
//     channel during rediscovery;
//   - a probe error, or ErrorCodeConnectionClosed from a call, means the
//     client closed itself: the conn is dead, the store builds a new one, and
//     callers stuck in the old one are released through dead;
//   - after Unavailable the conn is retired and replaced;
//   - a live client is closed only once no call or subscription uses it
//     (inflight counts both).
type conn struct {
	client   *esdbclient.Client
	inflight sync.WaitGroup // calls and probes inside client

	dead     chan struct{} // closed when the client closed itself
	deadOnce sync.Once
	retired  atomic.Bool // no new calls; closed once drained

	// mu guards gate and probing.
	mu      sync.Mutex
	gate    chan struct{} // closed while the client is believed connected
	probing bool
}

func newConn(cfg esdbclient.Configuration) (*conn, error) {
	client, err := esdbclient.NewClient(&cfg)
	if err != nil {
		return nil, err
	}
	c := &conn{client: client, dead: make(chan struct{}), gate: make(chan struct{})}
	c.startProbe()
	return c, nil
}

func (c *conn) release() { c.inflight.Done() }

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

func (c *conn) markDead() { c.deadOnce.Do(func() { close(c.dead) }) }

func (c *conn) retire()         { c.retired.Store(true) }
func (c *conn) isRetired() bool { return c.retired.Load() }

// closeWhenDrained closes a retired client once nothing uses it any more,
// unless it dies first.
func (c *conn) closeWhenDrained() {
	select {
	case <-c.idle():
		c.close()
	case <-c.dead:
	}
}

// idle returns a channel closed once no call, probe or subscription uses
// the client any more.
func (c *conn) idle() <-chan struct{} {
	done := make(chan struct{})
	go func() { c.inflight.Wait(); close(done) }()
	return done
}

// waitReady waits until the client is connected, dead, or ctx ends.
func (c *conn) waitReady(ctx context.Context) error {
	c.mu.Lock()
	g := c.gate
	c.mu.Unlock()
	select {
	case <-g:
		return nil
	case <-c.dead:
		return errClientDied
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reprobe closes the gate and probes the client, unless a probe runs.
func (c *conn) reprobe() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.probing || c.isDead() {
		return
	}
	c.gate = make(chan struct{})
	c.startProbeLocked()
}

func (c *conn) startProbe() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.startProbeLocked()
}

// startProbeLocked runs GetServerVersion: it returns once the client has a
// connection (discovering the node if needed), and fails only when
// discovery failed and the client closed itself.
func (c *conn) startProbeLocked() {
	c.probing = true
	g := c.gate
	c.inflight.Add(1)
	go func() {
		defer c.inflight.Done()
		_, err := c.client.GetServerVersion()
		c.mu.Lock()
		c.probing = false
		c.mu.Unlock()
		if err != nil {
			c.markDead()
			return
		}
		close(g)
	}()
}

// drain waits up to d for calls in flight; it reports whether none is
// left, or the client is dead (so nothing will come back through it).
func (c *conn) drain(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.idle():
		return true
	case <-c.dead:
		return false
	case <-t.C:
		return false
	}
}

func (c *conn) close() { _ = c.client.Close() }
