package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/merchant"
	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/projections"
)

func demoCommand() *command {
	c := &command{
		name:    "demo",
		summary: "run the main job end to end on a throw-away embedded ledger and print the results",
		usage: "demo [--data DIR] [--keep] [-v]\n\n" +
			"Places orders, then plays WeChat Pay against the real server: the retry series, concurrent copies,\n" +
			"a tampered, an underpaid and an unknown-order notification, a second payment, a v3 payment and refunds.",
	}
	c.run = func(ctx context.Context, env *cliEnv, args []string) error {
		fs := newFlagSet(c, env)
		data := fs.String("data", "", "data folder for the demo ledger (default: a new temporary folder, removed afterwards)")
		keep := fs.Bool("keep", false, "keep the data folder afterwards, to inspect events.db with sqlite3 or run 'ledger rebuild --data DIR' on it")
		verbose := fs.Bool("v", false, "show the server's log")
		if err := parse(fs, args); err != nil {
			return err
		}
		dir := *data
		if dir != "" {
			// The demo writes sandbox orders and payments, and a ledger is
			// append-only: never mix them into a real one.
			if _, err := os.Stat(filepath.Join(dir, eventsFile)); err == nil {
				return fmt.Errorf("%w: --data %s already holds a ledger (%s); the demo only runs on a new folder", errUsage, dir, eventsFile)
			}
		}
		if dir == "" {
			tmp, err := os.MkdirTemp("", "ledger-demo-")
			if err != nil {
				return err
			}
			dir = tmp
			if !*keep {
				defer os.RemoveAll(tmp)
			}
		}
		logOut := io.Discard
		if *verbose {
			logOut = env.stderr
		}
		return runDemo(ctx, env.stdout, dir, slog.New(slog.NewTextHandler(logOut, nil)), *keep || *data != "")
	}
	return c
}

// demoScenario is one order of the demo and how WeChat treats it.
type demoScenario struct {
	outTradeNo string
	what       string
	fee        int64 // order amount; 0: never placed
	play       func(ctx context.Context, d *demo, s *demoScenario) error
	deliveries int // HTTP requests sent
	acks       int // replies WeChat counts as received
}

type demo struct {
	m      *wxsim.Merchant
	url    string
	client *http.Client
	now    func() time.Time
	mu     sync.Mutex // guards tx
	tx     int
}

func (d *demo) txID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tx++
	return fmt.Sprintf("4200%s%s%06d", d.m.MchID[:4], d.now().In(domain.Beijing).Format("20060102"), d.tx)
}

// send delivers req like WeChat: retried on the (compressed) schedule until
// acknowledged, copies at once per attempt.
func (d *demo) send(ctx context.Context, s *demoScenario, path string, req wxsim.Request, copies int) (wxsim.Result, error) {
	res, err := wxsim.Deliver(ctx, d.client, d.url+path, req, wxsim.DeliverOptions{
		Copies: copies, Compress: 1e6, // the 24-hour schedule in about 0.1 s
	})
	for _, a := range res.Attempts {
		s.deliveries += len(a.Copies)
		for _, o := range a.Copies {
			if o.Accepted {
				s.acks++
			}
		}
	}
	return res, err
}

// replay sends the same notification n times in a row, as WeChat does when
// our replies are lost on the way back: every copy must be acknowledged.
func (d *demo) replay(ctx context.Context, s *demoScenario, path string, req wxsim.Request, n int) error {
	for i := 0; i < n; i++ {
		if _, err := d.send(ctx, s, path, req, 1); err != nil {
			return err
		}
	}
	return nil
}

func runDemo(ctx context.Context, out io.Writer, dir string, logger *slog.Logger, keep bool) error {
	fmt.Fprintf(out, "orderledger demo: a fresh embedded ledger in %s\n\n", dir)
	m, n, err := startSandbox(ctx, dir, logger)
	if err != nil {
		return err
	}
	defer n.Close(context.Background())
	api := newAPIClient(n.URL())
	d := &demo{m: m, url: n.URL(), client: api.http, now: time.Now}
	fmt.Fprintf(out, "server on %s, sandbox merchant %s (appid %s), store: %s\n\n", n.URL(), m.MchID, m.AppID, n.store.Features().Name)

	day := d.now().In(domain.Beijing).Format("20060102")
	otn := func(i int) string { return fmt.Sprintf("DEMO%s%03d", day, i) }
	pay := func(s *demoScenario, tx string, fee int64) wxsim.PayParams {
		return wxsim.PayParams{OutTradeNo: s.outTradeNo, TransactionID: tx, TotalFee: fee}
	}
	scenarios := []*demoScenario{
		{outTradeNo: otn(1), what: "paid; first delivery + WeChat's 15 retries", fee: 2990,
			play: func(ctx context.Context, d *demo, s *demoScenario) error {
				return d.replay(ctx, s, "/wechatpay/v2/notify", wxsim.V2Request(d.m.V2Pay(pay(s, d.txID(), 2990))), 1+len(wxsim.Schedule()))
			}},
		{outTradeNo: otn(2), what: "paid; 64 concurrent copies", fee: 100,
			play: func(ctx context.Context, d *demo, s *demoScenario) error {
				_, err := d.send(ctx, s, "/wechatpay/v2/notify", wxsim.V2Request(d.m.V2Pay(pay(s, d.txID(), 100))), 64)
				return err
			}},
		{outTradeNo: otn(3), what: "HMAC-SHA256 signed; 3 copies", fee: 1,
			play: func(ctx context.Context, d *demo, s *demoScenario) error {
				p := pay(s, d.txID(), 1)
				p.SignType = "HMAC-SHA256"
				return d.replay(ctx, s, "/wechatpay/v2/notify", wxsim.V2Request(d.m.V2Pay(p)), 3)
			}},
		{outTradeNo: otn(4), what: "forged: fee changed after signing, refused", fee: 500,
			play: func(ctx context.Context, d *demo, s *demoScenario) error {
				body := d.m.V2PayTampered(pay(s, d.txID(), 500), "total_fee", "1")
				_, err := d.send(ctx, s, "/wechatpay/v2/notify", wxsim.V2Request(body), 1)
				if errors.Is(err, wxsim.ErrNotAcknowledged) {
					return nil // every retry refused: right
				}
				return err
			}},
		{outTradeNo: otn(5), what: "underpaid: signed total_fee 1 for an 8800 order", fee: 8800,
			play: func(ctx context.Context, d *demo, s *demoScenario) error {
				return d.replay(ctx, s, "/wechatpay/v2/notify", wxsim.V2Request(d.m.V2Pay(pay(s, d.txID(), 1))), 2)
			}},
		{outTradeNo: otn(6), what: "unknown order: paid, never placed here", fee: 0,
			play: func(ctx context.Context, d *demo, s *demoScenario) error {
				return d.replay(ctx, s, "/wechatpay/v2/notify", wxsim.V2Request(d.m.V2Pay(pay(s, d.txID(), 1200))), 3)
			}},
		{outTradeNo: otn(7), what: "paid twice: a second transaction", fee: 4500,
			play: func(ctx context.Context, d *demo, s *demoScenario) error {
				if err := d.replay(ctx, s, "/wechatpay/v2/notify", wxsim.V2Request(d.m.V2Pay(pay(s, d.txID(), 4500))), 1); err != nil {
					return err
				}
				return d.replay(ctx, s, "/wechatpay/v2/notify", wxsim.V2Request(d.m.V2Pay(pay(s, d.txID(), 4500))), 2)
			}},
		{outTradeNo: otn(8), what: "API v3 payment (5 copies), then a v2 refund of 2000 (3 copies)", fee: 5000,
			play: func(ctx context.Context, d *demo, s *demoScenario) error {
				tx := d.txID()
				h, body := d.m.V3Pay(pay(s, tx, 5000))
				req := d.m.V3Request(h, body)
				for i := 0; i < 5; i++ {
					if _, err := d.send(ctx, s, "/wechatpay/v3/notify", req, 1); err != nil {
						return err
					}
				}
				rf := d.m.V2Refund(wxsim.RefundParams{OutTradeNo: s.outTradeNo, TransactionID: tx,
					OutRefundNo: "R" + s.outTradeNo, TotalFee: 5000, RefundFee: 2000})
				return d.replay(ctx, s, "/wechatpay/v2/refund-notify", wxsim.V2Request(rf), 3)
			}},
		{outTradeNo: otn(9), what: "v3 refund arrives before its payment, then the payment", fee: 700,
			play: func(ctx context.Context, d *demo, s *demoScenario) error {
				tx := d.txID()
				h, body := d.m.V3Refund(wxsim.RefundParams{OutTradeNo: s.outTradeNo, TransactionID: tx,
					OutRefundNo: "R" + s.outTradeNo, TotalFee: 700, RefundFee: 700})
				if _, err := d.send(ctx, s, "/wechatpay/v3/notify", d.m.V3Request(h, body), 2); err != nil {
					return err
				}
				return d.replay(ctx, s, "/wechatpay/v2/notify", wxsim.V2Request(d.m.V2Pay(pay(s, tx, 700))), 2)
			}},
	}

	placed := 0
	for _, s := range scenarios {
		if s.fee == 0 {
			continue
		}
		if _, err := api.placeOrder(ctx, orderRequest{MchID: m.MchID, AppID: m.AppID, OutTradeNo: s.outTradeNo,
			TotalFee: s.fee, Description: "demo order " + s.outTradeNo}); err != nil {
			return fmt.Errorf("place %s: %w", s.outTradeNo, err)
		}
		placed++
	}
	// A client retrying its order placement after a timeout: still one order.
	if st, err := api.placeOrder(ctx, orderRequest{MchID: m.MchID, AppID: m.AppID, OutTradeNo: scenarios[0].outTradeNo,
		TotalFee: scenarios[0].fee, Description: "demo order " + scenarios[0].outTradeNo}); err != nil || st != http.StatusOK {
		return fmt.Errorf("placing an identical order again: want 200, got %d %v", st, err)
	}
	fmt.Fprintf(out, "placed %d orders (and placed the first one again: 200, still one order)\n\n", placed)

	for _, s := range scenarios {
		if err := s.play(ctx, d, s); err != nil {
			return fmt.Errorf("%s: %w", s.outTradeNo, err)
		}
	}

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OUT_TRADE_NO\tSCENARIO\tSENT\tACKED\tSTATUS\tPAID\tREFUNDED\tPAYMENTS\tANOMALIES")
	totalSent, totalAcked, payments := 0, 0, 0
	for _, s := range scenarios {
		v, err := api.order(ctx, m.MchID, s.outTradeNo)
		if err != nil {
			return err
		}
		evs, err := api.events(ctx, m.MchID, s.outTradeNo)
		if err != nil {
			return err
		}
		pc := 0
		for _, e := range evs.Events {
			if e.Type == domain.TypePaymentConfirmed {
				pc++
			}
		}
		var codes []string
		for _, a := range v.Anomalies {
			codes = append(codes, a.Code)
		}
		anoms := strings.Join(codes, ",")
		if anoms == "" {
			anoms = "-"
		}
		totalSent += s.deliveries
		totalAcked += s.acks
		payments += pc
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\n", s.outTradeNo, s.what, s.deliveries, s.acks,
			v.Status, yuan(v.PaidFee), yuan(v.RefundedFee), pc, anoms)
	}
	tw.Flush()

	today := projections.Day(d.now())
	tot, err := api.dailyTotals(ctx, m.MchID, today, today)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\ndaily totals (Beijing day %s):\n", today)
	for _, t := range tot.Days {
		fmt.Fprintf(out, "  orders placed %d, payments %d = %s yuan, refunds %d = %s, net %s; anomalies: %s\n",
			t.OrdersPlaced, t.Payments, yuan(t.PaymentsFee), t.Refunds, yuan(t.RefundsFee), yuan(t.NetFee), formatAnomalies(t.Anomalies))
	}

	// The proof: count what the store holds, straight from the global log.
	counts, distinct, err := countEvents(ctx, n.store)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nproof of exactly-once:\n")
	fmt.Fprintf(out, "  notifications sent %d, acknowledged %d (refused ones were the forgery: WeChat would retry it, and it stays refused)\n", totalSent, totalAcked)
	fmt.Fprintf(out, "  events stored: %s\n", formatCounts(counts))
	fmt.Fprintf(out, "  PaymentConfirmed events %d for %d distinct transaction ids: each payment recorded once\n",
		counts[domain.TypePaymentConfirmed], distinct)
	if counts[domain.TypePaymentConfirmed] != distinct {
		return fmt.Errorf("a transaction was recorded twice: %d PaymentConfirmed for %d transactions", counts[domain.TypePaymentConfirmed], distinct)
	}

	// Projections rebuilt from zero must equal the live ones.
	live, err := projections.DigestFile(ctx, filepath.Join(dir, readModelFile))
	if err != nil {
		return err
	}
	rebuilt := filepath.Join(dir, "readmodel-rebuilt.db")
	if err := projections.Rebuild(ctx, n.store, rebuilt); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	fresh, err := projections.DigestFile(ctx, rebuilt)
	if err != nil {
		return err
	}
	same := "identical"
	if live.Sum != fresh.Sum {
		same = "DIFFERENT"
	}
	fmt.Fprintf(out, "  read model rebuilt from zero: %s to the live one (%d orders, checkpoint %s)\n", same, fresh.Orders, fresh.Checkpoint)
	if keep {
		fmt.Fprintf(out, "\ndata kept in %s: try `sqlite3 %s 'SELECT position, stream_id, event_type FROM events'`\n",
			dir, filepath.Join(dir, eventsFile))
	}
	if same != "identical" {
		return errors.New("rebuilt read model differs from the live one")
	}
	return nil
}

// countEvents counts stored events by type and the distinct transaction ids
// of PaymentConfirmed events.
func countEvents(ctx context.Context, store eventstore.Store) (map[string]int, int, error) {
	counts := map[string]int{}
	txs := map[string]bool{}
	_, err := walkEvents(ctx, store, eventstore.Start, func(r eventstore.RecordedEvent) error {
		counts[r.Type]++
		key, ok, err := paymentKey(r)
		if ok {
			txs[key] = true
		}
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return counts, len(txs), nil
}

// startSandbox makes a sandbox merchant with fresh test keys, writes its
// configuration under dir/sandbox (0700: it holds keys) and starts a node
// for it on a free local port, on the embedded store in dir.
func startSandbox(ctx context.Context, dir string, logger *slog.Logger) (*wxsim.Merchant, *node, error) {
	m, err := wxsim.NewSandbox()
	if err != nil {
		return nil, nil, err
	}
	cfgDir := filepath.Join(dir, "sandbox")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		return nil, nil, err
	}
	cfgPath, err := wxsim.WriteConfig(cfgDir, m)
	if err != nil {
		return nil, nil, err
	}
	reg, err := merchant.Load(cfgPath, func(string) string { return "" })
	if err != nil {
		return nil, nil, err
	}
	n, err := startNode(ctx, nodeConfig{Addr: "127.0.0.1:0", DataDir: dir, Merchants: reg, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return m, n, nil
}

// walkEvents calls fn for every stored event after `after`, in global
// order, and returns the position of the last one (after, if none).
func walkEvents(ctx context.Context, store eventstore.Store, after eventstore.Position, fn func(eventstore.RecordedEvent) error) (eventstore.Position, error) {
	for {
		recs, err := store.ReadAll(ctx, after, 1000)
		if err != nil {
			return after, fmt.Errorf("reading the store: %w", err)
		}
		if len(recs) == 0 {
			return after, nil
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return after, err
			}
			after = r.Position
		}
	}
}

// paymentKey is "mch_id/transaction_id" of a PaymentConfirmed event; ok is
// false for other events.
func paymentKey(r eventstore.RecordedEvent) (key string, ok bool, err error) {
	if r.Type != domain.TypePaymentConfirmed {
		return "", false, nil
	}
	e, err := domain.Unmarshal(r.Type, r.Data)
	if err != nil {
		return "", false, err
	}
	pc := e.(domain.PaymentConfirmed)
	return pc.MchID + "/" + pc.TransactionID, true, nil
}

func formatCounts(c map[string]int) string {
	var parts []string
	for _, t := range []string{domain.TypeOrderPlaced, domain.TypePaymentConfirmed, domain.TypePaymentFailed,
		domain.TypeAnomalyDetected, domain.TypeRefundSucceeded, domain.TypeRefundClosed, domain.TypeRefundAbnormal, domain.TypeOrderClosed} {
		if c[t] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, c[t]))
		}
	}
	return strings.Join(parts, ", ")
}

func formatAnomalies(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	codes := make([]string, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for i, c := range codes {
		codes[i] = fmt.Sprintf("%s %d", c, m[c])
	}
	return strings.Join(codes, ", ")
}

// yuan formats fen as yuan with two decimals, exactly (no floats).
func yuan(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s%d.%02d", sign, fen/100, fen%100)
}
