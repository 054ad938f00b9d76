package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/cmd/internal/wxsim"
)

func noEnv(string) string { return "" }

// runMain runs Main and returns its exit code and outputs.
func runMain(ctx context.Context, args ...string) (int, string, string) {
	var stdout, stderr syncBuffer
	code := Main(ctx, args, &stdout, &stderr, noEnv)
	return code, stdout.String(), stderr.String()
}

// TestCLI: help, per-command -h, and command-line mistakes (exit 2 with a
// message naming the mistake).
func TestCLI(t *testing.T) {
	t.Parallel()
	cfg, err := wxsim.WriteConfig(t.TempDir(), newMerchant(t))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args       []string
		code       int
		stdout     []string
		stderr     []string
		noStdout   bool
		stderrOnly bool
	}{
		{args: []string{"help"}, code: 0, stdout: []string{"Usage: ledger <command>", "serve", "demo", "rebuild", "loadgen"}},
		{args: []string{"-h"}, code: 0, stdout: []string{"Usage: ledger <command>"}},
		{args: []string{"help", "serve"}, code: 0, stdout: []string{"Usage: ledger serve", "-merchants"}},
		{args: []string{"serve", "-h"}, code: 0, stdout: []string{"Usage: ledger serve", "-merchants", "-addr", "-data", "-store", "-log-level"}},
		{args: []string{"demo", "-h"}, code: 0, stdout: []string{"Usage: ledger demo", "-keep", "-data"}},
		{args: []string{"rebuild", "-h"}, code: 0, stdout: []string{"Usage: ledger rebuild", "-data"}},
		{args: []string{"help", "frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`}, noStdout: true},
		{args: nil, code: 2, stderr: []string{"Usage: ledger <command>"}},
		{args: []string{"frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`, "Usage: ledger <command>"}, noStdout: true},
		{args: []string{"serve"}, code: 2, stderr: []string{"--merchants is required"}, noStdout: true},
		{args: []string{"serve", "--bogus"}, code: 2, stderr: []string{"bogus"}},
		{args: []string{"serve", "--merchants", cfg, "--data", t.TempDir(), "--log-level", "loud"}, code: 2, stderr: []string{"--log-level"}},
		{args: []string{"serve", "--merchants", cfg, "--data", t.TempDir(), "--store", "postgres://x"}, code: 2, stderr: []string{"--store"}},
		{args: []string{"serve", "--merchants", filepath.Join(t.TempDir(), "missing.json"), "--data", t.TempDir()}, code: 1, stderr: []string{"missing.json"}},
		{args: []string{"rebuild", "--data", t.TempDir(), "stray"}, code: 2, stderr: []string{`unexpected argument "stray"`}},
		{args: []string{"rebuild", "--data", t.TempDir()}, code: 1, stderr: []string{"no ledger"}},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		code, stdout, stderr := runMain(ctx, c.args...)
		cancel()
		if code != c.code {
			t.Errorf("ledger %q: exit %d, want %d\nstdout %s\nstderr %s", c.args, code, c.code, stdout, stderr)
			continue
		}
		for _, w := range c.stdout {
			if !strings.Contains(stdout, w) {
				t.Errorf("ledger %q: stdout lacks %q:\n%s", c.args, w, stdout)
			}
		}
		for _, w := range c.stderr {
			if !strings.Contains(stderr, w) {
				t.Errorf("ledger %q: stderr lacks %q:\n%s", c.args, w, stderr)
			}
		}
		if c.noStdout && stdout != "" {
			t.Errorf("ledger %q: an error should go to stderr, stdout has %s", c.args, stdout)
		}
	}
}

// TestDemo runs `ledger demo` itself, keeping its data folder, and then
// `ledger rebuild` on that folder.
func TestDemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, stdout, stderr := runMain(context.Background(), "demo", "--data", dir)
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, w := range []string{"identical", "each payment recorded once", "AMOUNT_MISMATCH", "UNKNOWN_ORDER", "DUPLICATE_PAYMENT", "REFUNDED"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("demo output lacks %q:\n%s", w, stdout)
		}
	}
	code, stdout, stderr = runMain(context.Background(), "rebuild", "--data", dir)
	if code != 0 || !strings.Contains(stdout, "identical") {
		t.Fatalf("rebuild after demo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// The demo never writes into an existing ledger.
	if code, _, stderr = runMain(context.Background(), "demo", "--data", dir); code != 2 || !strings.Contains(stderr, "already holds a ledger") {
		t.Fatalf("demo on an existing ledger: exit %d\n%s", code, stderr)
	}
}

// TestSecretsNotLogged runs `ledger serve` at debug level (text and JSON
// logs) through accepted, refused and undecryptable notifications and a
// config error: the v2 API key, its MD5 (the refund key), the APIv3 key and
// decrypted plaintext never appear in the logs.
func TestSecretsNotLogged(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			m := newMerchant(t)
			cfg, err := wxsim.WriteConfig(t.TempDir(), m)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stdout, logs := newLineWatcher(), &syncBuffer{}
			done := make(chan int, 1)
			go func() {
				done <- Main(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--merchants", cfg,
					"--log-level", "debug", "--log-format", format}, stdout, logs, noEnv)
			}()
			h := &harness{t: t, url: waitURL(t, stdout, done), m: m, ms: []*wxsim.Merchant{m}, client: newTestClient()}
			defer h.client.CloseIdleConnections()

			const v3Marker, refundMarker = "oV3PLAINTEXTMARKER", "REFUND-PLAINTEXT-MARKER"
			h.placeOrder(m, "SEC001", 100)
			h.placeOrder(m, "SEC002", 200)
			mustV2Success(t, "v2", h.v2(m.V2Pay(wxsim.PayParams{OutTradeNo: "SEC001", TransactionID: "4200000000000000000000000601", TotalFee: 100})))
			mustV2Fail(t, "tampered", h.v2(m.V2PayTampered(wxsim.PayParams{OutTradeNo: "SEC001", TotalFee: 100}, "total_fee", "2")), 0)
			refund := wxsim.RefundParams{OutTradeNo: "SEC001", TransactionID: "4200000000000000000000000601", OutRefundNo: "R1",
				TotalFee: 100, RefundFee: 10, ReceivedAccount: refundMarker}
			mustV2Success(t, "v2 refund", h.v2Refund(m.V2Refund(refund)))
			f, _ := wechatpay.ParseV2(m.V2Refund(refund))
			f["req_info"] = f["req_info"][:len(f["req_info"])-8] + "AAAAAAA="
			damaged, _ := wechatpay.EncodeV2(f)
			mustV2Fail(t, "damaged refund", h.v2Refund(damaged), 0)
			hd, body := m.V3Pay(wxsim.PayParams{OutTradeNo: "SEC002", TotalFee: 200, OpenID: v3Marker})
			mustV3Success(t, "v3", h.v3(hd, body))
			hd.Set(wechatpay.HeaderSignature, "AAAA"+hd.Get(wechatpay.HeaderSignature)[4:])
			mustV3Refused(t, "v3 bad signature", h.v3(hd, body), http.StatusUnauthorized)
			// Signed right, encrypted under another APIv3 key.
			wrongKey := *m
			wrongKey.APIv3Key = strings.Repeat("k", 32)
			hd, body = wrongKey.V3Pay(wxsim.PayParams{OutTradeNo: "SEC002", TotalFee: 200, OpenID: v3Marker})
			mustV3Refused(t, "v3 undecryptable", h.v3(hd, body), http.StatusUnauthorized)
			_, body = m.V3Pay(wxsim.PayParams{OutTradeNo: "SEC002", TotalFee: 200, OpenID: v3Marker, Extra: map[string]string{"mchid": "1"}})
			mustV3Refused(t, "v3 wrong mchid", h.v3(m.SignV3(body), body), http.StatusBadRequest)
			cancel()
			if code := <-done; code != 0 {
				t.Fatalf("serve: exit %d", code)
			}

			// A config error names the field, not the key.
			bad := editedConfig(t, m, func(_ string, e map[string]any) { e["apiv3_key"] = m.APIv3Key[:30] })
			_, out2, err2 := runMain(context.Background(), "serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--merchants", bad, "--log-level", "debug")

			all := logs.String() + stdout.String() + out2 + err2
			if !strings.Contains(logs.String(), "notification acknowledged") || !strings.Contains(logs.String(), "request refused") {
				t.Fatalf("the log does not show the notifications; nothing was checked:\n%s", logs)
			}
			sum := md5.Sum([]byte(m.APIKey))
			for name, secret := range map[string]string{
				"api_key": m.APIKey, "apiv3_key": m.APIv3Key, "apiv3_key prefix": m.APIv3Key[:30],
				"md5(api_key)": hex.EncodeToString(sum[:]), "MD5(api_key)": strings.ToUpper(hex.EncodeToString(sum[:])),
				"decrypted v3 resource": v3Marker, "decrypted req_info": refundMarker,
			} {
				if strings.Contains(all, secret) {
					t.Errorf("%s appears in the output", name)
				}
			}
		})
	}
}
