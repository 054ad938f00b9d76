package httpapi_test

// The handler tests' harness: a Server wired as cmd/ledger wires it (the
// real embedded store, app.Ledger, a merchant.Registry, the projections
// read model and runner), driven in-process through its http.Handler.
// fakeStore injects store failures under the ledger only; the projections
// read the real store.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/app"
	"github.com/orderledger/orderledger/cmd/internal/httpapi"
	"github.com/orderledger/orderledger/cmd/internal/merchant"
	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/sqlite"
	"github.com/orderledger/orderledger/projections"
)

// v2SuccessBody is the exact acknowledgement WeChat expects.
const v2SuccessBody = `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`

var (
	beijing = time.FixedZone("CST", 8*3600)
	// testNow is every clock of the tests: the server's, the simulator's
	// and the v3 verifier's (its 5-minute window).
	testNow = time.Date(2025, 3, 14, 10, 30, 0, 0, beijing)
)

func fixedClock() time.Time { return testNow }

// sharedKey is one RSA key for every sandbox merchant: key generation is
// slow, more so under -race.
var sharedKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func newSandbox(t testing.TB) *wxsim.Merchant {
	t.Helper()
	key, err := sharedKey()
	if err != nil {
		t.Fatal(err)
	}
	m, err := wxsim.NewSandboxWithKey(key)
	if err != nil {
		t.Fatal(err)
	}
	m.Now = fixedClock
	return m
}

// fakeStore wraps the real store under the ledger; a non-nil append
// replaces Append.
type fakeStore struct {
	eventstore.Store
	mu     sync.Mutex // guards append
	append func(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error)
}

func (f *fakeStore) setAppend(fn func(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error)) {
	f.mu.Lock()
	f.append = fn
	f.mu.Unlock()
}

func (f *fakeStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	f.mu.Lock()
	fn := f.append
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, stream, expected, events...)
	}
	return f.Store.Append(ctx, stream, expected, events...)
}

// failWith makes every append fail with err.
func (f *fakeStore) failWith(err error) {
	f.setAppend(func(context.Context, string, eventstore.ExpectedRevision, ...eventstore.EventData) (eventstore.AppendResult, error) {
		return eventstore.AppendResult{}, err
	})
}

type harness struct {
	t       testing.TB
	srv     *httpapi.Server
	handler http.Handler
	store   eventstore.Store // the real store
	fake    *fakeStore       // what the ledger writes through
	m       *wxsim.Merchant  // the configured merchant
	v3only  *wxsim.Merchant  // a configured merchant without a v2 API key
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	dir := t.TempDir()
	store, err := sqlite.Open(filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	rm, err := projections.OpenReadModel(filepath.Join(dir, "readmodel.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rm.Close() })
	runner := projections.NewRunner(store, rm)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("projections runner: %v", err)
		}
	})

	m := newSandbox(t)
	v3only := newSandbox(t)
	reg := merchant.NewRegistry(&merchant.Merchant{
		MchID: m.MchID, AppID: m.AppID, AppIDs: []string{m.AppID, "wxminiprogram0001"},
		APIKey: merchant.NewSecret(m.APIKey), APIv3Key: merchant.NewSecret(m.APIv3Key),
	}, &merchant.Merchant{
		// No v2 API key: its v2 notifications must be refused.
		MchID: v3only.MchID, AppID: v3only.AppID, AppIDs: []string{v3only.AppID},
		APIv3Key: merchant.NewSecret(v3only.APIv3Key),
	})
	v3, err := m.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeStore{Store: store}
	srv := httpapi.New(httpapi.Config{
		Ledger:    app.New(fake, app.WithClock(fixedClock)),
		Merchants: reg,
		Views:     rm,
		Follower:  runner,
		Now:       fixedClock,
		V3:        map[string]*wechatpay.V3Verifier{m.MchID: v3},
	})
	return &harness{t: t, srv: srv, handler: srv.Handler(), store: store, fake: fake, m: m, v3only: v3only}
}

// reply is a finished response.
type reply struct {
	status int
	header http.Header
	body   string
}

func (h *harness) do(method, path string, header http.Header, body []byte) reply {
	h.t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	return reply{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

func (h *harness) v2(body []byte) reply {
	return h.do(http.MethodPost, "/wechatpay/v2/notify", http.Header{"Content-Type": {"text/xml"}}, body)
}

func (h *harness) v3(header http.Header, body []byte) reply {
	header = header.Clone()
	header.Set("Content-Type", "application/json")
	return h.do(http.MethodPost, "/wechatpay/v3/notify", header, body)
}

func (h *harness) postJSON(path, body string) reply {
	return h.do(http.MethodPost, path, http.Header{"Content-Type": {"application/json"}}, []byte(body))
}

// placeOrder places otn through the API and requires a 201.
func (h *harness) placeOrder(otn string, fee int64) {
	h.t.Helper()
	r := h.postJSON("/v1/orders", orderJSON(h.m, otn, fee))
	if r.status != http.StatusCreated {
		h.t.Fatalf("place %s: %d %s", otn, r.status, r.body)
	}
}

func orderJSON(m *wxsim.Merchant, otn string, fee int64) string {
	b, _ := json.Marshal(map[string]any{
		"mch_id": m.MchID, "appid": m.AppID, "out_trade_no": otn, "total_fee": fee, "description": "coffee",
	})
	return string(b)
}

// events returns the stored events of the merchant's order.
func (h *harness) events(otn string) []eventstore.RecordedEvent {
	h.t.Helper()
	recs, err := h.store.ReadStream(context.Background(), domain.StreamID(h.m.MchID, otn), 0, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

func countType(recs []eventstore.RecordedEvent, typ string) int {
	n := 0
	for _, r := range recs {
		if r.Type == typ {
			n++
		}
	}
	return n
}

// mustV2Fail checks a v2 refusal: the status, a FAIL body as WeChat reads
// it, and not a trace of the word SUCCESS (a careless reader must not take
// it for an acknowledgement).
func mustV2Fail(t testing.TB, what string, r reply, wantStatus int) {
	t.Helper()
	if r.status != wantStatus || r.status < 300 {
		t.Errorf("%s: status %d, want %d", what, r.status, wantStatus)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/xml") {
		t.Errorf("%s: Content-Type %q, want text/xml", what, ct)
	}
	if !strings.HasPrefix(r.body, `<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[`) ||
		!strings.HasSuffix(r.body, `]]></return_msg></xml>`) {
		t.Errorf("%s: body is not a v2 FAIL reply: %s", what, r.body)
	}
	if strings.Contains(strings.ToUpper(r.body), "SUCCESS") {
		t.Errorf("%s: FAIL body mentions SUCCESS: %s", what, r.body)
	}
	if fields, err := wechatpay.ParseV2([]byte(r.body)); err != nil || fields["return_code"] != "FAIL" || fields["return_msg"] == "" {
		t.Errorf("%s: body does not parse as return_code FAIL with a message (err %v): %s", what, err, r.body)
	}
}

// mustV3Fail checks a v3 refusal: 4xx/5xx and {"code":"FAIL","message":...}.
func mustV3Fail(t testing.TB, what string, r reply, wantStatus int) {
	t.Helper()
	if r.status != wantStatus || r.status < 400 {
		t.Errorf("%s: status %d, want %d", what, r.status, wantStatus)
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body["code"] != "FAIL" || body["message"] == "" || len(body) != 2 {
		t.Errorf("%s: body %s, want {\"code\":\"FAIL\",\"message\":...} (err %v)", what, r.body, err)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
}

// apiError is the JSON error body of the ledger's own API.
type apiError struct {
	Error  string            `json:"error"`
	Fields map[string]string `json:"fields"`
}

func decodeError(t testing.TB, r reply) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
		t.Fatalf("error body %q is not {\"error\": ...} (err %v)", r.body, err)
	}
	return e
}
