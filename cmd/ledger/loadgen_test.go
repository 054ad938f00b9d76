package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/wxsim"
)

// lgLatency matches one latency cell of the table (lgDur's output).
var lgLatency = regexp.MustCompile(`^[0-9.]+(µs|ms|s)$`)

// lgRow is one parsed row of loadgen's table.
type lgRow struct {
	phase             string
	clients, requests int
	errors            int
	fsyncs            string
}

// lgTable parses the report table: the header line, then one row per
// phase and level, until a blank line.
func lgTable(t *testing.T, out string) []lgRow {
	t.Helper()
	lines := strings.Split(out, "\n")
	start := -1
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "PHASE" {
			want := []string{"PHASE", "CLIENTS", "REQUESTS", "ERRORS", "SECONDS", "NOTIFIES/S", "P50", "P99", "MAX", "CPU/REQ", "FSYNCS", "APPENDS/FSYNC", "READMODEL", "LAG"}
			if strings.Join(f, " ") != strings.Join(want, " ") {
				t.Fatalf("table header %q, want %q", f, want)
			}
			start = i + 1
			break
		}
	}
	if start < 0 {
		t.Fatalf("no table in output:\n%s", out)
	}
	var rows []lgRow
	for _, l := range lines[start:] {
		f := strings.Fields(l)
		if len(f) == 0 {
			break
		}
		if len(f) != 13 {
			t.Fatalf("row %q has %d columns, want 13", l, len(f))
		}
		num := func(s string) int {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("row %q: %q is not a number", l, s)
			}
			return n
		}
		rate, err := strconv.ParseFloat(f[5], 64)
		if err != nil || rate <= 0 {
			t.Errorf("row %q: notifies/s %q, want a positive number", l, f[5])
		}
		for _, d := range f[6:10] {
			if !lgLatency.MatchString(d) {
				t.Errorf("row %q: latency %q is not a duration", l, d)
			}
		}
		rows = append(rows, lgRow{phase: f[0], clients: num(f[1]), requests: num(f[2]), errors: num(f[3]), fsyncs: f[10]})
	}
	return rows
}

func TestLoadgenInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	code, out, errOut := runMain(ctx, "loadgen", "--requests", "24", "--clients", "1,4", "--data", dir,
		"--cpuprofile", filepath.Join(dir, "cpu.prof"))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	rows := lgTable(t, out)
	want := []struct {
		phase   string
		clients int
	}{{"distinct", 1}, {"distinct", 4}, {"duplicate", 1}, {"duplicate", 4}}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(want), out)
	}
	for i, w := range want {
		r := rows[i]
		if r.phase != w.phase || r.clients != w.clients || r.requests != 24 || r.errors != 0 {
			t.Errorf("row %d: %+v, want %s with %d clients, 24 requests, 0 errors", i, r, w.phase, w.clients)
		}
		// Every distinct notification is an fsynced append; a duplicate
		// writes nothing.
		fs, err := strconv.Atoi(r.fsyncs)
		switch {
		case err != nil:
			t.Errorf("row %d: fsyncs %q, want a number (in-process store stats)", i, r.fsyncs)
		case w.phase == "distinct" && (fs < 1 || fs > 24):
			t.Errorf("row %d: %d fsyncs for 24 distinct notifications, want 1..24", i, fs)
		case w.phase == "duplicate" && fs != 0:
			t.Errorf("row %d: %d fsyncs for duplicates, want 0", i, fs)
		}
	}
	if !strings.Contains(out, "exactly-once: 48 distinct notifications sent, 48 PaymentConfirmed events for 48 transactions") ||
		!strings.Contains(out, ": OK\n") {
		t.Errorf("no exactly-once line for 48 notifications:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "cpu.prof")); err != nil || fi.Size() == 0 {
		t.Errorf("cpu profile: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, eventsFile)); err != nil {
		t.Errorf("--data folder has no event store: %v", err)
	}
}

// TestLoadgenRemote runs against a separately started ledger (--url), with
// the merchant's keys from its config file.
func TestLoadgenRemote(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := startHarness(t, harnessOptions{})
	// The same merchant's keys, in a file of loadgen's own.
	cfg, err := wxsim.WriteConfig(t.TempDir(), h.m)
	if err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runMain(ctx, "loadgen", "--url", h.url, "--merchants", cfg, "--requests", "10", "--clients", "1,4",
		"--phases", "distinct")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	rows := lgTable(t, out)
	if len(rows) != 2 || rows[0].phase != "distinct" || rows[1].clients != 4 || rows[0].errors+rows[1].errors != 0 {
		t.Errorf("rows %+v, want distinct at 1 and 4 clients without errors", rows)
	}
	if rows[0].fsyncs != "-" {
		t.Errorf("remote run shows fsyncs %q, want - (no store stats over HTTP)", rows[0].fsyncs)
	}
	if !strings.Contains(out, "exactly-once: 20 distinct notifications sent, 20 PaymentConfirmed events for 20 transactions (read through the events API") {
		t.Errorf("no exactly-once line for 20 notifications:\n%s", out)
	}
}

func TestLoadgenUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--clients", "0"},
		{"--clients", "1,x"},
		{"--phases", "bogus"},
		{"--url", "http://127.0.0.1:1"},           // no --merchants
		{"--url", "http://127.0.0.1:1", "--keep"}, // in-process flag
		{"--requests", "-1"},
		{"stray"},
	} {
		if code, _, errOut := runMain(context.Background(), append([]string{"loadgen"}, args...)...); code != 2 {
			t.Errorf("loadgen %v: exit %d, want 2 (usage)\n%s", args, code, errOut)
		}
	}
}
