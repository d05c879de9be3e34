// Package observability holds the proxy's Prometheus metrics.
package observability

import (
	"net/http"
	"slices"
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
	upstreamRq    *prometheus.GaugeVec
	configApplied *prometheus.CounterVec
	ops           *prometheus.CounterVec
	opDuration    *prometheus.HistogramVec
	tlsFailed     *prometheus.CounterVec
	tlsConns      *prometheus.CounterVec
	authz         *prometheus.CounterVec
	limits        limitMetrics
	sniff         sniffMetrics
	istio         *istioMetrics // nil: Istio's standard metrics are off

	// The observers of successful requests, by their labels: Prometheus
	// hashes and checks every label on each lookup, which is a good part
	// of a Redis GET's cost; a map of our own is a fraction of that.
	reqMu  sync.RWMutex
	reqOK  map[requestKey]*Series
	opsMu  sync.RWMutex
	opsOK  map[operationKey]*Series
	opSeen int // distinct operation names, capped at ops.Max
	// opLimit bounds the operation label: set before the proxy serves.
	opLimit OperationLimit
}

// OperationLimit bounds the operation label of rosetta_operations_total
// and rosetta_operation_duration_seconds by configuration: with Names,
// only those operations get a series of their own; otherwise the first Max
// distinct names do (per proxy, across listeners). Every other request
// counts as "other" (all of them with Max 0).
type OperationLimit struct {
	Max   int
	Names []string
}

// DefaultOperationLimit is the bound without --operation-names and
// --max-operations.
var DefaultOperationLimit = OperationLimit{Max: 1000}

type requestKey struct{ listener, route, cluster string }

type operationKey struct{ listener, op string }

// Series counts and times the successful requests of one label set. A
// caller that records the same labels again and again (a connection's
// requests mostly take one route) may keep it and skip even our own map's
// lookup, whose hashing of the label strings is most of its cost.
type Series struct {
	labels   [3]string
	count    prometheus.Counter
	duration prometheus.Observer
}

// Is reports whether s is the series of these labels (the third is empty
// for an operation's).
func (s *Series) Is(a, b, c string) bool {
	return s.labels[0] == a && s.labels[1] == b && s.labels[2] == c
}

// Observe records one successful request that took d.
func (s *Series) Observe(d time.Duration) {
	s.count.Inc()
	s.duration.Observe(d.Seconds())
}

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
		upstreamRq: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rosetta_upstream_requests_active",
			Help: "Requests in flight to each upstream cluster (sent or waiting for a connection, retries included), as Envoy's upstream_rq_active.",
		}, []string{"cluster"}),
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
	m.tlsConns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_downstream_connections_total",
		Help: "Downstream connections accepted, by listener and transport (plaintext, tls: a listener's own certificate, mtls: a verified client certificate, hbone: a stream of an HBONE tunnel).",
	}, []string{"listener", "transport"})
	m.tlsFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_downstream_tls_handshake_errors_total",
		Help: "Downstream connections closed because their TLS handshake failed (no client certificate, an untrusted one, plaintext on a STRICT listener, a timeout).",
	}, []string{"listener"})
	m.authz = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_authorization_total",
		Help: "Authorization decisions that a policy made or refused (allowed by default is not counted), by listener, policy and result (allowed, denied, audited).",
	}, []string{"listener", "policy", "result"})
	m.Registry.MustRegister(m.tlsConns, m.tlsFailed, m.authz)
	m.registerLimits()
	m.registerSniff()
	m.istio = newIstioMetrics()
	m.Registry.MustRegister(m.istio.collectors()...)
	m.reqOK = map[requestKey]*Series{}
	m.opsOK = map[operationKey]*Series{}
	m.opLimit = DefaultOperationLimit
	m.Registry.MustRegister(m.ops, m.opDuration)
	m.Registry.MustRegister(m.requests, m.duration, m.downstreamCx, m.downstreamErr, m.upstreamErr, m.upstreamRq, m.configApplied,
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
	m.RequestSeries(listener, route, cluster).Observe(d)
}

// RequestSeries is the series of successful requests with these labels.
func (m *Metrics) RequestSeries(listener, route, cluster string) *Series {
	return seriesOf(&m.reqMu, m.reqOK, requestKey{listener, route, cluster}, func() *Series {
		return &Series{labels: [3]string{listener, route, cluster}, count: m.requests.WithLabelValues(listener, route, cluster, "ok"), duration: m.duration.WithLabelValues(listener, route, cluster)}
	})
}

// Operation records one request by the protocol's operation name.
func (m *Metrics) Operation(listener, op, status string, d time.Duration) {
	s := m.OperationSeries(listener, op)
	if s != nil && status == "ok" {
		s.Observe(d)
		return
	}
	if s == nil {
		op = "other"
	}
	m.ops.WithLabelValues(listener, op, status).Inc()
	m.opDuration.WithLabelValues(listener, op).Observe(d.Seconds())
}

// SetOperationLimit bounds the operation label; call it before the proxy
// serves.
func (m *Metrics) SetOperationLimit(l OperationLimit) {
	m.opsMu.Lock()
	defer m.opsMu.Unlock()
	m.opLimit = l
}

// OperationSeries is the series of successful requests with this operation
// name; nil when the OperationLimit gives op no series (such requests count
// as "other").
func (m *Metrics) OperationSeries(listener, op string) *Series {
	return seriesOf(&m.opsMu, m.opsOK, operationKey{listener, op}, func() *Series {
		if !m.opLimit.allows(op, m.opSeen) {
			return nil
		}
		m.opSeen++
		return &Series{labels: [3]string{listener, op, ""}, count: m.ops.WithLabelValues(listener, op, "ok"), duration: m.opDuration.WithLabelValues(listener, op)}
	})
}

// allows reports whether op may have a series of its own, seen distinct
// names having one: a listed name always (listeners times names bound
// them), any name while fewer than Max have one.
func (l OperationLimit) allows(op string, seen int) bool {
	if len(l.Names) > 0 {
		return slices.Contains(l.Names, op)
	}
	return seen < l.Max
}

// seriesOf is series[k], which create (nil: none) makes under mu's write
// lock the first time.
func seriesOf[K comparable](mu *sync.RWMutex, series map[K]*Series, k K, create func() *Series) *Series {
	mu.RLock()
	s := series[k]
	mu.RUnlock()
	if s != nil {
		return s
	}
	mu.Lock()
	defer mu.Unlock()
	if s = series[k]; s == nil {
		if s = create(); s != nil {
			series[k] = s
		}
	}
	return s
}

// DownstreamConn adds delta to a listener's open connections.
func (m *Metrics) DownstreamConn(listener string, delta float64) {
	m.downstreamCx.WithLabelValues(listener).Add(delta)
}

// ProtocolError counts a downstream connection closed for a malformed frame.
func (m *Metrics) ProtocolError(listener string) { m.downstreamErr.WithLabelValues(listener).Inc() }

// DownstreamAccepted counts a connection a listener took, by its transport.
func (m *Metrics) DownstreamAccepted(listener, transport string) {
	m.tlsConns.WithLabelValues(listener, transport).Inc()
}

// TLSHandshakeFailed counts a downstream connection whose handshake failed.
func (m *Metrics) TLSHandshakeFailed(listener string) { m.tlsFailed.WithLabelValues(listener).Inc() }

// Authorization counts a decision a policy made: result is "allowed",
// "denied" or "audited"; policy is "" for a denial because no ALLOW policy
// matched.
func (m *Metrics) Authorization(listener, policy, result string) {
	m.authz.WithLabelValues(listener, policy, result).Inc()
}

// UpstreamError counts an upstream failure.
func (m *Metrics) UpstreamError(cluster, kind string) {
	m.upstreamErr.WithLabelValues(cluster, kind).Inc()
}

// UpstreamActive is the gauge of a cluster's requests in flight; the
// proxy gives it to the cluster when a config is applied, so the hot path
// does no label lookup.
func (m *Metrics) UpstreamActive(cluster string) prometheus.Gauge {
	return m.upstreamRq.WithLabelValues(cluster)
}

// ConfigUpdate counts a config update; ok false for a rejected one.
func (m *Metrics) ConfigUpdate(ok bool) {
	r := "accepted"
	if !ok {
		r = "rejected"
	}
	m.configApplied.WithLabelValues(r).Inc()
}

// Identity exports the workload certificate's rotations and expiry, read
// when scraped: an operator alerts on an expiry that draws near, which
// means rotation keeps failing.
func (m *Metrics) Identity(rotations func() uint64, notAfter func() time.Time) {
	m.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rosetta_identity_rotations_total",
			Help: "Workload certificates installed after the first (renewals before expiry).",
		}, func() float64 { return float64(rotations()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rosetta_identity_cert_expiry_timestamp_seconds",
			Help: "When the workload certificate in use expires, in Unix seconds.",
		}, func() float64 { return float64(notAfter().Unix()) }),
	)
}
