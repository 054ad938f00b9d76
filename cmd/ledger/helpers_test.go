package main

// Test harness shared by the end-to-end tests of this package: a real node
// (startNode on 127.0.0.1:0, a t.TempDir() data folder, merchants loaded
// from a merchants.json written by wxsim), spoken to over real HTTP.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/merchant"
	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/esdb"
	"github.com/orderledger/orderledger/eventstore/sqlite"
	"github.com/orderledger/orderledger/projections"
)

// v2SuccessBody is the exact acknowledgement WeChat expects.
const v2SuccessBody = `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`

// sharedKey is one RSA key for every sandbox merchant of the tests: key
// generation is slow, more so under -race.
var sharedKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// newMerchant returns a sandbox merchant with fresh credentials on the
// shared signing key.
func newMerchant(t testing.TB) *wxsim.Merchant {
	t.Helper()
	key, err := sharedKey()
	if err != nil {
		t.Fatal(err)
	}
	m, err := wxsim.NewSandboxWithKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testClock is a settable clock, safe for concurrent use.
type testClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// fakeStore wraps a real store; append, when set, replaces Append (it may
// call inner). A small consumer-side fake: only Append is intercepted.
type fakeStore struct {
	eventstore.Store
	mu     sync.Mutex // guards append
	append func(ctx context.Context, inner eventstore.Store, stream string, exp eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error)
}

func (f *fakeStore) setAppend(fn func(ctx context.Context, inner eventstore.Store, stream string, exp eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error)) {
	f.mu.Lock()
	f.append = fn
	f.mu.Unlock()
}

func (f *fakeStore) Append(ctx context.Context, stream string, exp eventstore.ExpectedRevision, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	f.mu.Lock()
	fn := f.append
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, f.Store, stream, exp, evs...)
	}
	return f.Store.Append(ctx, stream, exp, evs...)
}

// harnessOptions configure startHarness; the zero value is one merchant,
// the real clock and the embedded store opened by the node.
type harnessOptions struct {
	merchants  []*wxsim.Merchant
	now        func() time.Time
	logger     *slog.Logger
	sqliteOpts []sqlite.Option
	// wrap, when set, wraps the embedded store before the node gets it.
	wrap func(eventstore.Store) eventstore.Store
	// storeURL is the node's store (nodeConfig.StoreURL, as `serve
	// --store`): "" is the embedded SQLite store, an esdb:// URL an
	// EventStoreDB the node opens itself (the read model stays in the data
	// folder).
	storeURL string
	// esdbOpts, when set, make the harness open storeURL itself with these
	// options (a stream namespace on a shared server) and hand the store
	// to the node.
	esdbOpts []esdb.Option
}

// harness is one running node and a client for it.
type harness struct {
	t      testing.TB
	n      *node
	url    string
	dir    string
	m      *wxsim.Merchant // the first merchant
	ms     []*wxsim.Merchant
	client *http.Client
}

func startHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	ms := o.merchants
	if len(ms) == 0 {
		ms = []*wxsim.Merchant{newMerchant(t)}
	}
	cfgPath, err := wxsim.WriteConfig(t.TempDir(), ms...)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := merchant.Load(cfgPath, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := nodeConfig{Addr: "127.0.0.1:0", DataDir: dir, StoreURL: o.storeURL, Merchants: reg, Logger: o.logger, Now: o.now}
	if o.storeURL != "" && (o.wrap != nil || len(o.sqliteOpts) > 0) {
		t.Fatal("harness: wrap and sqliteOpts are for the embedded store only")
	}
	if len(o.esdbOpts) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := esdb.Open(ctx, o.storeURL, o.esdbOpts...)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Store = s
	}
	if o.wrap != nil || len(o.sqliteOpts) > 0 {
		s, err := sqlite.Open(filepath.Join(dir, eventsFile), o.sqliteOpts...)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Store = s
		if o.wrap != nil {
			cfg.Store = o.wrap(s)
		}
	}
	n, err := startNode(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n.store.(*esdb.Store); ok != (o.storeURL != "") {
		n.Close(context.Background())
		t.Fatalf("harness: store %s for store URL %q", n.store.Features().Name, o.storeURL)
	}
	h := &harness{t: t, n: n, url: n.URL(), dir: dir, m: ms[0], ms: ms, client: newTestClient()}
	t.Cleanup(func() {
		h.client.CloseIdleConnections()
		if err := n.Close(context.Background()); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	return h
}

// with returns h reporting to t (for subtests: a helper must fail the
// test whose goroutine it runs on).
func (h *harness) with(t testing.TB) *harness {
	c := *h
	c.t = t
	return &c
}

func newTestClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// reply is one HTTP exchange's result.
type reply struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (r reply) String() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return fmt.Sprintf("%d %s %q", r.status, r.header.Get("Content-Type"), r.body)
}

func doRequest(client *http.Client, method, u string, header http.Header, body []byte) reply {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return reply{err: err}
	}
	if header != nil {
		req.Header = header.Clone()
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

func (h *harness) post(path string, header http.Header, body []byte) reply {
	return doRequest(h.client, http.MethodPost, h.url+path, header, body)
}

func xmlHeader() http.Header { return http.Header{"Content-Type": {"text/xml"}} }

// v2 posts a v2 payment notification body.
func (h *harness) v2(body []byte) reply { return h.post("/wechatpay/v2/notify", xmlHeader(), body) }

// v2Refund posts a v2 refund notification body.
func (h *harness) v2Refund(body []byte) reply {
	return h.post("/wechatpay/v2/refund-notify", xmlHeader(), body)
}

// v3 posts a v3 notification.
func (h *harness) v3(header http.Header, body []byte) reply {
	return h.post("/wechatpay/v3/notify", header, body)
}

func (h *harness) get(path string) reply {
	return doRequest(h.client, http.MethodGet, h.url+path, nil, nil)
}

// deliver delivers req like WeChat, retrying without really sleeping.
func (h *harness) deliver(path string, req wxsim.Request, copies int) (wxsim.Result, error) {
	return wxsim.Deliver(context.Background(), h.client, h.url+path, req, wxsim.DeliverOptions{
		Copies: copies, Sleep: func(context.Context, time.Duration) {}, Timeout: 20 * time.Second,
	})
}

// isV2Success reports whether r is exactly WeChat's acknowledgement.
func isV2Success(r reply) bool {
	return r.err == nil && r.status == http.StatusOK && string(r.body) == v2SuccessBody &&
		strings.HasPrefix(r.header.Get("Content-Type"), "text/xml")
}

func mustV2Success(t testing.TB, what string, r reply) {
	t.Helper()
	if !isV2Success(r) {
		t.Fatalf("%s: want 200 text/xml SUCCESS, got %v", what, r)
	}
}

// mustV2Fail checks a v2 refusal: a non-2xx status and a FAIL body, which
// WeChat's rules judge as not received.
func mustV2Fail(t testing.TB, what string, r reply, wantStatus int) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s: %v", what, r.err)
	}
	if r.status < 300 || (wantStatus != 0 && r.status != wantStatus) {
		t.Fatalf("%s: want status %d (non-2xx), got %v", what, wantStatus, r)
	}
	f, err := wechatpay.ParseV2(r.body)
	if err != nil || f["return_code"] != "FAIL" {
		t.Fatalf("%s: want a FAIL XML body, got %v (%v)", what, r, err)
	}
	if wxsim.IsV2Success(r.status, r.header, r.body) {
		t.Fatalf("%s: WeChat would count %v as received", what, r)
	}
}

// mustV3Refused checks a v3 refusal: non-2xx with a JSON body.
func mustV3Refused(t testing.TB, what string, r reply, wantStatus int) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s: %v", what, r.err)
	}
	if wxsim.IsV3Success(r.status) || r.status < 400 || (wantStatus != 0 && r.status != wantStatus) {
		t.Fatalf("%s: want status %d, got %v", what, wantStatus, r)
	}
	var body struct{ Code, Message string }
	if err := json.Unmarshal(r.body, &body); err != nil || body.Code == "" {
		t.Fatalf("%s: want a JSON {code, message} body, got %v", what, r)
	}
}

func mustV3Success(t testing.TB, what string, r reply) {
	t.Helper()
	if r.err != nil || r.status != http.StatusNoContent {
		t.Fatalf("%s: want 204, got %v", what, r)
	}
}

// placeOrder places an order and expects 201.
func (h *harness) placeOrder(m *wxsim.Merchant, otn string, fee int64) {
	h.t.Helper()
	r := h.placeRaw(orderRequest{MchID: m.MchID, AppID: m.AppID, OutTradeNo: otn, TotalFee: fee, Description: "order " + otn})
	if r.err != nil || r.status != http.StatusCreated {
		h.t.Fatalf("place %s: want 201, got %v", otn, r)
	}
}

func (h *harness) placeRaw(body any) reply {
	b, err := json.Marshal(body)
	if err != nil {
		return reply{err: err}
	}
	return h.post("/v1/orders", http.Header{"Content-Type": {"application/json"}}, b)
}

func orderPath(mchID, otn string) string {
	return "/v1/merchants/" + url.PathEscape(mchID) + "/orders/" + url.PathEscape(otn)
}

// order reads an order's view (read-your-writes: the server waits for the
// projections to apply the order's last event).
func (h *harness) order(m *wxsim.Merchant, otn string) projections.OrderView {
	h.t.Helper()
	r := h.get(orderPath(m.MchID, otn))
	if r.err != nil || r.status != http.StatusOK {
		h.t.Fatalf("GET order %s: %v", otn, r)
	}
	var v projections.OrderView
	if err := json.Unmarshal(r.body, &v); err != nil {
		h.t.Fatalf("GET order %s: %v", otn, err)
	}
	return v
}

// apiEvent is one event as GET .../events shows it.
type apiEvent struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Revision uint64          `json:"revision"`
	Data     json.RawMessage `json:"data"`
}

// events lists an order stream's events over HTTP; none for a 404.
func eventsAt(t testing.TB, client *http.Client, base, mchID, otn string) []apiEvent {
	t.Helper()
	r := doRequest(client, http.MethodGet, base+orderPath(mchID, otn)+"/events", nil, nil)
	if r.err == nil && r.status == http.StatusNotFound {
		return nil
	}
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("GET events %s: %v", otn, r)
	}
	var body struct {
		Events []apiEvent `json:"events"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("GET events %s: %v", otn, err)
	}
	return body.Events
}

func (h *harness) events(m *wxsim.Merchant, otn string) []apiEvent {
	h.t.Helper()
	return eventsAt(h.t, h.client, h.url, m.MchID, otn)
}

// countType counts events of a type.
func countType(evs []apiEvent, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func types(evs []apiEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// paymentTx returns the transaction ids of the PaymentConfirmed events.
func paymentTx(t testing.TB, evs []apiEvent) []string {
	t.Helper()
	var out []string
	for _, e := range evs {
		if e.Type != domain.TypePaymentConfirmed {
			continue
		}
		var p struct {
			TransactionID string `json:"transaction_id"`
		}
		if err := json.Unmarshal(e.Data, &p); err != nil || p.TransactionID == "" {
			t.Fatalf("PaymentConfirmed data %s: %v", e.Data, err)
		}
		out = append(out, p.TransactionID)
	}
	return out
}

// storeEvents reads the whole global log of the node's store.
func (h *harness) storeEvents() []eventstore.RecordedEvent {
	h.t.Helper()
	recs, err := readAll(context.Background(), h.n.store)
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

func readAll(ctx context.Context, s eventstore.Store) ([]eventstore.RecordedEvent, error) {
	var out []eventstore.RecordedEvent
	after := eventstore.Start
	for {
		recs, err := s.ReadAll(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			return out, nil
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Position
	}
}

func hasAnomaly(v projections.OrderView, code string) bool {
	for _, a := range v.Anomalies {
		if a.Code == code {
			return true
		}
	}
	return false
}

// mustStatus checks an order's status and amounts.
func (h *harness) mustOrder(m *wxsim.Merchant, otn, status string, paid, refunded int64) projections.OrderView {
	h.t.Helper()
	v := h.order(m, otn)
	if v.Status != status || v.PaidFee != paid || v.RefundedFee != refunded {
		h.t.Fatalf("order %s: want %s paid %d refunded %d, got %s paid %d refunded %d (anomalies %+v)",
			otn, status, paid, refunded, v.Status, v.PaidFee, v.RefundedFee, v.Anomalies)
	}
	return v
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (a logger's
// output).
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lineWatcher is a Writer that reports the URL of a "listening on" line.
type lineWatcher struct {
	syncBuffer
	once sync.Once
	url  chan string
}

func newLineWatcher() *lineWatcher { return &lineWatcher{url: make(chan string, 1)} }

func (w *lineWatcher) Write(p []byte) (int, error) {
	n, err := w.syncBuffer.Write(p)
	if u := listeningURL(w.String()); u != "" {
		w.once.Do(func() { w.url <- u })
	}
	return n, err
}

// listeningURL finds the URL in serve's "ledger listening on URL (...)" line.
func listeningURL(out string) string {
	_, rest, ok := strings.Cut(out, "ledger listening on ")
	if !ok {
		return ""
	}
	u, _, ok := strings.Cut(rest, " ")
	if !ok {
		return ""
	}
	return u
}

// waitURL waits for serve to print its URL, or for done (Main returned).
func waitURL(t testing.TB, w *lineWatcher, done <-chan int) string {
	t.Helper()
	select {
	case u := <-w.url:
		return u
	case code := <-done:
		t.Fatalf("serve returned %d before listening; output %s", code, w.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start within 60s; output %s", w.String())
	}
	return ""
}

var errInjected = errors.New("injected: disk on fire")
