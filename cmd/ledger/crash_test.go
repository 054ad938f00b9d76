package main

import (
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/wxsim"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/projections"
)

// buildLedger builds the ledger binary into a temporary folder.
func buildLedger(t *testing.T) string { return goBuild(t, "ledger", ".") }

// goBuild builds the command pkg into t's temporary folder as name (with
// -race when the tests run with it, which reuses the packages already built).
func goBuild(t *testing.T, name, pkg string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), name)
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, pkg)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// ledgerProc is one `ledger serve` OS process.
type ledgerProc struct {
	cmd    *exec.Cmd
	url    string
	stdout *lineWatcher
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
}

// childEnv is the environment without LEDGER_* settings of the caller.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEDGER_") {
			env = append(env, kv)
		}
	}
	return env
}

// startServe starts `ledger serve` on a free port (127.0.0.1:0; the URL is
// read from its "listening on" line) and waits until it answers /healthz.
func startServe(t *testing.T, bin, dataDir, cfg string) *ledgerProc {
	t.Helper()
	p := &ledgerProc{stdout: newLineWatcher(), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data", dataDir, "--merchants", cfg, "--log-level", "warn")
	p.cmd.Env = childEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	select {
	case p.url = <-p.stdout.url:
	case <-p.done:
		t.Fatalf("ledger serve exited: %v\n%s", p.cmd.ProcessState, p.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("ledger serve did not start within 60s\n%s", p.stderr)
	}
	// It listens before it prints, so one check is enough.
	if r := doRequest(http.DefaultClient, http.MethodGet, p.url+"/healthz", nil, nil); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("healthz: %v", r)
	}
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *ledgerProc) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and expects a clean exit.
func (p *ledgerProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("ledger serve did not stop on SIGTERM\n%s", p.stderr)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("ledger serve exit code %d\n%s", code, p.stderr)
	}
}

// crashNote is one payment notification of the crash test.
type crashNote struct {
	otn  string
	fee  int64
	tx   string
	body []byte
}

// fire sends the notifications idx with 16 workers, each notification as
// 1-3 concurrent copies, and records which got the SUCCESS reply. Once
// killAfter notifications were acknowledged in this round it kills p
// (SIGKILL) while the rest are in flight; 0 means never.
func fire(t *testing.T, p *ledgerProc, notes []crashNote, idx []int, acked []atomic.Bool, killAfter int64) {
	t.Helper()
	client := newTestClient()
	client.Timeout = 20 * time.Second
	defer client.CloseIdleConnections()
	work := make(chan int)
	var acks atomic.Int64                    // notifications acknowledged in this round
	round := make([]atomic.Bool, len(notes)) // which ones
	var killOnce sync.Once
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				copies := 1 + i%3
				var cwg sync.WaitGroup
				for range copies {
					cwg.Go(func() {
						r := doRequest(client, http.MethodPost, p.url+"/wechatpay/v2/notify", xmlHeader(), notes[i].body)
						if isV2Success(r) {
							acked[i].Store(true)
							if round[i].CompareAndSwap(false, true) && acks.Add(1) == killAfter {
								killOnce.Do(func() { p.cmd.Process.Signal(syscall.SIGKILL) })
							}
						} else if r.err == nil && r.status < 300 {
							t.Errorf("%s: a 2xx reply that is not SUCCESS: %v", notes[i].otn, r)
						}
					})
				}
				cwg.Wait()
			}
		})
	}
	for _, i := range idx {
		work <- i
	}
	close(work)
	wg.Wait()
	if killAfter > 0 {
		if acks.Load() < killAfter {
			t.Fatalf("only %d acknowledgements before the planned kill at %d", acks.Load(), killAfter)
		}
		<-p.done
	}
}

// checkAcked asserts that every acknowledged notification is stored exactly
// once and no notification more than once; it returns how many were stored.
func checkAcked(t *testing.T, p *ledgerProc, m *wxsim.Merchant, notes []crashNote, acked []atomic.Bool) (stored, ack int) {
	t.Helper()
	client := newTestClient()
	defer client.CloseIdleConnections()
	for i, n := range notes {
		tx := paymentTx(t, eventsAt(t, client, p.url, m.MchID, n.otn))
		switch {
		case len(tx) > 1:
			t.Fatalf("%s: %d PaymentConfirmed", n.otn, len(tx))
		case len(tx) == 1 && tx[0] != n.tx:
			t.Fatalf("%s: paid by %s, want %s", n.otn, tx[0], n.tx)
		case acked[i].Load() && len(tx) != 1:
			t.Fatalf("%s was acknowledged but is not stored after the crash", n.otn)
		}
		stored += len(tx)
		if acked[i].Load() {
			ack++
		}
	}
	return stored, ack
}

// TestCrashRecovery kills a real `ledger serve` process (SIGKILL) twice in
// the middle of a notification storm, restarts it on the same data folder,
// and checks that every acknowledged notification survived exactly once;
// WeChat's retries then complete the rest, each payment recorded once, the
// daily totals match, and `ledger rebuild` finds the read model identical.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process")
	}
	t.Parallel()
	bin := buildLedger(t)
	m := newMerchant(t)
	cfg, err := wxsim.WriteConfig(t.TempDir(), m)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p := startServe(t, bin, data, cfg)

	const n = 200
	notes := make([]crashNote, n)
	var total int64
	for i := range notes {
		notes[i] = crashNote{otn: fmt.Sprintf("CR%05d", i), fee: 1 + mrand.Int64N(100000), tx: fmt.Sprintf("42000000%020d", i)}
		notes[i].body = m.V2Pay(wxsim.PayParams{OutTradeNo: notes[i].otn, TransactionID: notes[i].tx, TotalFee: notes[i].fee})
		total += notes[i].fee
	}
	api := newAPIClient(p.url)
	var pwg sync.WaitGroup
	place := make(chan crashNote)
	for range 8 {
		pwg.Go(func() {
			for c := range place {
				if st, err := api.placeOrder(context.Background(), orderRequest{MchID: m.MchID, AppID: m.AppID,
					OutTradeNo: c.otn, TotalFee: c.fee, Description: "crash " + c.otn}); err != nil || st != http.StatusCreated {
					t.Errorf("place %s: %d %v", c.otn, st, err)
				}
			}
		})
	}
	for _, c := range notes {
		place <- c
	}
	close(place)
	pwg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	acked := make([]atomic.Bool, n)
	all := mrand.Perm(n)

	// Round 1: kill after about half are acknowledged.
	fire(t, p, notes, all, acked, n/2)
	p = startServe(t, bin, data, cfg)
	stored, ack := checkAcked(t, p, m, notes, acked)
	t.Logf("kill 1: %d acknowledged, %d stored", ack, stored)

	// Round 2: WeChat retries everything (duplicates of the acknowledged
	// ones too); kill again half-way.
	fire(t, p, notes, mrand.Perm(n), acked, n/2)
	p = startServe(t, bin, data, cfg)
	stored, ack = checkAcked(t, p, m, notes, acked)
	t.Logf("kill 2: %d acknowledged, %d stored", ack, stored)

	// WeChat keeps retrying whatever was not acknowledged, until it is.
	client := newTestClient()
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range notes {
		if acked[i].Load() {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := wxsim.Deliver(context.Background(), client, p.url+"/wechatpay/v2/notify", wxsim.V2Request(notes[i].body),
				wxsim.DeliverOptions{Copies: 1 + i%3, Sleep: func(context.Context, time.Duration) {}, Timeout: 20 * time.Second})
			if err != nil {
				t.Errorf("%s: %v", notes[i].otn, err)
				return
			}
			acked[i].Store(res.Delivered)
		})
	}
	wg.Wait()
	stored, ack = checkAcked(t, p, m, notes, acked)
	if stored != n || ack != n {
		t.Fatalf("after the retries: %d stored, %d acknowledged, want %d", stored, ack, n)
	}
	api = newAPIClient(p.url)
	for _, c := range notes {
		v, err := api.order(context.Background(), m.MchID, c.otn)
		if err != nil {
			t.Fatal(err)
		}
		if v.Status != domain.StatusPaid || v.PaidFee != c.fee || len(v.Anomalies) != 0 {
			t.Fatalf("%s: %s paid %d (want %d), anomalies %+v", c.otn, v.Status, v.PaidFee, c.fee, v.Anomalies)
		}
	}

	// Daily totals: one payment per order, the fees summed once. (The
	// payments carry today's time; a run across Beijing midnight spans two
	// days, so sum a range.)
	now := time.Now().In(domain.Beijing)
	q := url.Values{"from": {now.AddDate(0, 0, -1).Format(time.DateOnly)}, "to": {now.AddDate(0, 0, 1).Format(time.DateOnly)}}
	r := doRequest(client, http.MethodGet, p.url+"/v1/merchants/"+m.MchID+"/totals/daily?"+q.Encode(), nil, nil)
	var totals struct {
		Days []projections.DailyTotal `json:"days"`
	}
	if r.err != nil || r.status != http.StatusOK || json.Unmarshal(r.body, &totals) != nil {
		t.Fatalf("totals: %v", r)
	}
	var payments, fees, placed int64
	for _, d := range totals.Days {
		payments += d.Payments
		fees += d.PaymentsFee
		placed += d.OrdersPlaced
	}
	if payments != n || fees != total || placed != n {
		t.Fatalf("daily totals: %d payments of %d fen, %d placed; want %d of %d, %d placed", payments, fees, placed, n, total, n)
	}

	p.stop(t)
	rebuild := exec.Command(bin, "rebuild", "--data", data)
	rebuild.Env = childEnv()
	out, err := rebuild.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "identical") {
		t.Fatalf("ledger rebuild: %v\n%s", err, out)
	}
}
