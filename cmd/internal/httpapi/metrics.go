package httpapi

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Metrics counts notification outcomes, exposed at /metrics in the
// Prometheus text format (counters only; no client library needed).
type Metrics struct {
	mu       sync.Mutex // guards counters (the map, not the values)
	counters map[string]*atomic.Int64
}

func newMetrics() *Metrics { return &Metrics{counters: map[string]*atomic.Int64{}} }

// Inc adds one to the counter notifications_total{channel,outcome}.
func (m *Metrics) Inc(channel, outcome string) {
	m.inc(fmt.Sprintf(`ledger_notifications_total{channel=%q,outcome=%q}`, channel, outcome))
}

func (m *Metrics) inc(key string) {
	m.mu.Lock()
	c, ok := m.counters[key]
	if !ok {
		c = new(atomic.Int64)
		m.counters[key] = c
	}
	m.mu.Unlock()
	c.Add(1)
}

// IncAnomaly adds one to ledger_anomalies_total{channel,code}: a separate
// metric, so that summing notifications_total never counts one twice.
func (m *Metrics) IncAnomaly(channel, code string) {
	m.inc(fmt.Sprintf(`ledger_anomalies_total{channel=%q,code=%q}`, channel, code))
}

// Get returns the counter's value (for tests and the demo).
func (m *Metrics) Get(channel, outcome string) int64 {
	key := fmt.Sprintf(`ledger_notifications_total{channel=%q,outcome=%q}`, channel, outcome)
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.counters[key]; ok {
		return c.Load()
	}
	return 0
}

func (m *Metrics) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	keys := make([]string, 0, len(m.counters))
	for k := range m.counters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, fam := range []struct{ name, help string }{
		{"ledger_notifications_total", "WeChat Pay notifications by channel and outcome (recorded, duplicate, anomaly, rejected, store_error, signature_probe)."},
		{"ledger_anomalies_total", "Anomalies recorded, by channel and code."},
	} {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", fam.name, fam.help, fam.name)
		for _, k := range keys {
			if strings.HasPrefix(k, fam.name+"{") {
				fmt.Fprintf(&b, "%s %d\n", k, m.counters[k].Load())
			}
		}
	}
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Write([]byte(b.String()))
}
