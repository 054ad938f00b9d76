// Package httpapi is the ledger's HTTP surface: WeChat Pay's notification
// endpoints and the merchant-facing orders and read API. Handlers only
// translate: transport in, a typed command to app, a reply out. One
// function (classify) maps every error to a status and public message.
package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/app"
	"github.com/orderledger/orderledger/cmd/internal/merchant"
	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/projections"
)

// MaxNotifyBody bounds a WeChat notification body (they are a few KiB).
const MaxNotifyBody = 64 << 10

// MaxAPIBody bounds a JSON request body of the orders API.
const MaxAPIBody = 64 << 10

// Views is what the read API needs from the projections.
type Views interface {
	Order(ctx context.Context, mchID, outTradeNo string) (projections.OrderView, bool, error)
	DailyTotals(ctx context.Context, mchID string, from, to time.Time) ([]projections.DailyTotal, error)
}

// Follower lets a reader wait until the projections have applied a position
// (read-your-writes after an append).
type Follower interface {
	WaitFor(ctx context.Context, pos eventstore.Position) error
}

// Config wires a Server.
type Config struct {
	Ledger    *app.Ledger
	Merchants *merchant.Registry
	Views     Views
	Follower  Follower
	Logger    *slog.Logger
	// Now is the clock (notification receipt times, v3 timestamp window).
	Now func() time.Time
	// Ready reports whether the server can take traffic (/readyz).
	Ready func(ctx context.Context) error
	// AppendTimeout bounds how long a notification waits for its durable
	// append (default 10s; WeChat gives up after about 5s and retries).
	AppendTimeout time.Duration
	// ReadWait bounds how long a read waits for the projections to catch up
	// with the order's last event (default 5s).
	ReadWait time.Duration
	// V3 verifies API v3 notifications, by mch_id; nil disables v3 for
	// that merchant.
	V3 map[string]*wechatpay.V3Verifier
}

// Server serves the ledger's HTTP API.
type Server struct {
	Config
	log     *slog.Logger
	metrics *Metrics
	v3IDs   []string // mch_ids of V3, sorted: the order serials are looked up in
	head    highWater
}

// New returns a Server; call Handler for the http.Handler.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AppendTimeout == 0 {
		cfg.AppendTimeout = 10 * time.Second
	}
	if cfg.ReadWait == 0 {
		cfg.ReadWait = 5 * time.Second
	}
	s := &Server{Config: cfg, log: cfg.Logger, metrics: newMetrics()}
	for id, v := range cfg.V3 {
		if v != nil {
			s.v3IDs = append(s.v3IDs, id)
		}
	}
	slices.Sort(s.v3IDs)
	return s
}

// Metrics returns the server's counters.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /wechatpay/v2/notify", s.v2Notify)
	mux.HandleFunc("POST /wechatpay/v2/refund-notify", s.v2RefundNotify)
	mux.HandleFunc("POST /wechatpay/v3/notify", s.v3Notify)
	mux.HandleFunc("POST /v1/orders", s.placeOrder)
	mux.HandleFunc("POST /v1/merchants/{mch_id}/orders/{out_trade_no}/close", s.closeOrder)
	mux.HandleFunc("GET /v1/merchants/{mch_id}/orders/{out_trade_no}", s.getOrder)
	mux.HandleFunc("GET /v1/merchants/{mch_id}/orders/{out_trade_no}/events", s.getEvents)
	mux.HandleFunc("GET /v1/merchants/{mch_id}/totals/daily", s.dailyTotals)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /metrics", s.metrics.serve)
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.Ready != nil {
		if err := s.Ready(r.Context()); err != nil {
			s.log.Warn("not ready", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// readBody reads at most limit bytes of the request body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &reject{status: http.StatusRequestEntityTooLarge, msg: "body too large", cause: err}
	}
	if err != nil {
		return nil, badRequest("cannot read body", err)
	}
	return body, nil
}

// appendContext detaches the durable append from the caller's connection:
// once a notification is verified, a client hanging up must not abort the
// write half-way. It is still bounded by AppendTimeout.
func (s *Server) appendContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), s.AppendTimeout)
}

// waitApplied waits, at most ReadWait, until the projections have applied
// pos (read-your-writes).
func (s *Server) waitApplied(ctx context.Context, pos eventstore.Position) error {
	if s.Follower == nil || pos.IsZero() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.ReadWait)
	defer cancel()
	return s.Follower.WaitFor(ctx, pos)
}

// waitView waits until the projections have applied pos, then reads the view.
func (s *Server) waitView(ctx context.Context, mchID, outTradeNo string, pos eventstore.Position) (projections.OrderView, bool, error) {
	if err := s.waitApplied(ctx, pos); err != nil {
		return projections.OrderView{}, false, err
	}
	return s.Views.Order(ctx, mchID, outTradeNo)
}
