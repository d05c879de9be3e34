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

	// The observers of successful requests, by their labels: Prometheus
	// hashes and checks every label on each lookup, which is a good part
	// of a Redis GET's cost; a map of our own is a fraction of that.
	reqMu  sync.RWMutex
	reqOK  map[requestKey]observers
	opsMu  sync.RWMutex
	opsOK  map[operationKey]observers
	opSeen int // distinct operation names, capped at maxOperations
}

type requestKey struct{ listener, route, cluster string }

type operationKey struct{ listener, op string }

// observers count a successful request and record its duration.
type observers struct {
	count    prometheus.Counter
	duration prometheus.Observer
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
	m.reqOK = map[requestKey]observers{}
	m.opsOK = map[operationKey]observers{}
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
	if status != "ok" {
		m.requests.WithLabelValues(listener, route, cluster, status).Inc()
		m.duration.WithLabelValues(listener, route, cluster).Observe(d.Seconds())
		return
	}
	k := requestKey{listener, route, cluster}
	m.reqMu.RLock()
	o, ok := m.reqOK[k]
	m.reqMu.RUnlock()
	if !ok {
		o = observers{m.requests.WithLabelValues(listener, route, cluster, status), m.duration.WithLabelValues(listener, route, cluster)}
		m.reqMu.Lock()
		m.reqOK[k] = o
		m.reqMu.Unlock()
	}
	o.count.Inc()
	o.duration.Observe(d.Seconds())
}

// Operation records one request by the protocol's operation name.
func (m *Metrics) Operation(listener, op, status string, d time.Duration) {
	k := operationKey{listener, op}
	m.opsMu.RLock()
	o, ok := m.opsOK[k]
	m.opsMu.RUnlock()
	if ok && status == "ok" {
		o.count.Inc()
		o.duration.Observe(d.Seconds())
		return
	}
	m.operationSlow(k, status, d)
}

// operationSlow records what Operation's map does not hold yet, or a failure;
// past maxOperations distinct names, new ones count as "other".
func (m *Metrics) operationSlow(k operationKey, status string, d time.Duration) {
	m.opsMu.Lock()
	o, ok := m.opsOK[k]
	if !ok && m.opSeen < maxOperations {
		m.opSeen++
		o = observers{m.ops.WithLabelValues(k.listener, k.op, "ok"), m.opDuration.WithLabelValues(k.listener, k.op)}
		m.opsOK[k], ok = o, true
	}
	m.opsMu.Unlock()
	op := k.op
	if !ok {
		op = "other"
		o.duration = m.opDuration.WithLabelValues(k.listener, op)
	}
	m.ops.WithLabelValues(k.listener, op, status).Inc()
	o.duration.Observe(d.Seconds())
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
