package observability

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// limitMetrics count what the proxy's limits refuse, and show the buffer
// budget in use.
type limitMetrics struct {
	closed   *prometheus.CounterVec
	refused  *prometheus.CounterVec
	upClosed *prometheus.CounterVec
	budget   atomic.Pointer[budgetSource]
}

type budgetSource struct {
	inUse func() float64
	limit float64
}

func (m *Metrics) registerLimits() {
	l := &m.limits
	l.closed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_downstream_connections_closed_by_limit_total",
		Help: "Downstream connections the proxy closed at a limit, by listener and limit (buffer_limit, buffer_budget, frame_timeout, idle_timeout).",
	}, []string{"listener", "limit"})
	l.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_downstream_connections_refused_total",
		Help: "Downstream connections closed as they were accepted because the listener had max_connections open.",
	}, []string{"listener"})
	l.upClosed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_upstream_connections_closed_by_limit_total",
		Help: "Upstream connections the proxy closed at a limit (an answer too large, too slow, or past the buffer budget), by limit.",
	}, []string{"limit"})
	m.Registry.MustRegister(l.closed, l.refused, l.upClosed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rosetta_buffer_budget_bytes_in_use",
			Help: "Bytes held for frames not yet whole, downstream and upstream, counted against the buffer budget.",
		}, func() float64 {
			if b := l.budget.Load(); b != nil {
				return b.inUse()
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rosetta_buffer_budget_bytes_limit",
			Help: "The buffer budget (--buffer-budget); 0: unbounded.",
		}, func() float64 {
			if b := l.budget.Load(); b != nil {
				return b.limit
			}
			return 0
		}))
}

// BufferBudget has the budget gauges read inUse, and show limit.
func (m *Metrics) BufferBudget(inUse func() float64, limit float64) {
	m.limits.budget.Store(&budgetSource{inUse: inUse, limit: limit})
}

// ClosedByLimit counts a downstream connection closed at limit.
func (m *Metrics) ClosedByLimit(listener, limit string) {
	m.limits.closed.WithLabelValues(listener, limit).Inc()
}

// Refused counts a downstream connection refused at max_connections.
func (m *Metrics) Refused(listener string) { m.limits.refused.WithLabelValues(listener).Inc() }

// UpstreamClosedByLimit counts an upstream connection closed at limit.
func (m *Metrics) UpstreamClosedByLimit(limit string) { m.limits.upClosed.WithLabelValues(limit).Inc() }
