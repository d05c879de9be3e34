// Package observability holds the proxy's Prometheus metrics.
package observability

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the proxy's metrics, in their own registry so tests can run
// many proxies in one process.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	downstreamCx  *prometheus.GaugeVec
	downstreamErr *prometheus.CounterVec
	upstreamErr   *prometheus.CounterVec
	configApplied *prometheus.CounterVec
	ops           *prometheus.CounterVec
	opDuration    *prometheus.HistogramVec

	opsMu   sync.RWMutex
	opNames map[string]struct{}
}

// maxOperations caps the distinct operation names per proxy, so a client
// sending random method names cannot grow the metrics without bound; the
// rest count as "other".
const maxOperations = 1000

// New registers the proxy's metrics.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_requests_total",
			Help: "Requests handled, by listener, route, upstream cluster and status (ok or the error the proxy or upstream gave).",
		}, []string{"listener", "route", "cluster", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rosetta_request_duration_seconds",
			Help:    "Time from a request's arrival to its response leaving the proxy.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"listener", "route", "cluster"}),
		downstreamCx: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rosetta_downstream_connections_active",
			Help: "Open downstream connections per listener.",
		}, []string{"listener"}),
		downstreamErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_downstream_protocol_errors_total",
			Help: "Downstream connections closed because of a malformed frame.",
		}, []string{"listener"}),
		upstreamErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_upstream_errors_total",
			Help: "Upstream failures by cluster and kind (connect, reset, timeout, overloaded).",
		}, []string{"cluster", "kind"}),
		configApplied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_config_updates_total",
			Help: "Configuration updates, accepted or rejected.",
		}, []string{"result"}),
	}
	m.ops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_operations_total",
		Help: "Requests by the protocol's operation (Dubbo and Thrift method, tRPC func, Redis command) and status.",
	}, []string{"listener", "operation", "status"})
	m.opDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rosetta_operation_duration_seconds",
		Help:    "Time from a request's arrival to its answer, by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"listener", "operation"})
	m.opNames = map[string]struct{}{}
	m.Registry.MustRegister(m.ops, m.opDuration)
	m.Registry.MustRegister(m.requests, m.duration, m.downstreamCx, m.downstreamErr, m.upstreamErr, m.configApplied,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Request records one finished request.
func (m *Metrics) Request(listener, route, cluster, status string, d time.Duration) {
	m.requests.WithLabelValues(listener, route, cluster, status).Inc()
	m.duration.WithLabelValues(listener, route, cluster).Observe(d.Seconds())
}

// Operation records one request by the protocol's operation name.
func (m *Metrics) Operation(listener, op, status string, d time.Duration) {
	op = m.operationName(op)
	m.ops.WithLabelValues(listener, op, status).Inc()
	m.opDuration.WithLabelValues(listener, op).Observe(d.Seconds())
}

func (m *Metrics) operationName(op string) string {
	m.opsMu.RLock()
	_, known := m.opNames[op]
	m.opsMu.RUnlock()
	if known { // every request after an operation's first: no exclusive lock
		return op
	}
	m.opsMu.Lock()
	defer m.opsMu.Unlock()
	if _, ok := m.opNames[op]; ok {
		return op
	}
	if len(m.opNames) >= maxOperations {
		return "other"
	}
	m.opNames[op] = struct{}{}
	return op
}

// DownstreamConn adds delta to a listener's open connections.
func (m *Metrics) DownstreamConn(listener string, delta float64) {
	m.downstreamCx.WithLabelValues(listener).Add(delta)
}

// ProtocolError counts a downstream connection closed for a malformed frame.
func (m *Metrics) ProtocolError(listener string) { m.downstreamErr.WithLabelValues(listener).Inc() }

// UpstreamError counts an upstream failure.
func (m *Metrics) UpstreamError(cluster, kind string) {
	m.upstreamErr.WithLabelValues(cluster, kind).Inc()
}

// ConfigUpdate counts a config update; ok false for a rejected one.
func (m *Metrics) ConfigUpdate(ok bool) {
	r := "accepted"
	if !ok {
		r = "rejected"
	}
	m.configApplied.WithLabelValues(r).Inc()
}
