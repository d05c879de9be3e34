package observability

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Istio's standard metrics (istio.io/latest/docs/reference/config/metrics),
// so the dashboards and Kiali graphs an Istio operator already has show
// MetaProtocol traffic. docs/observability.md lists the labels and what
// each protocol gives as response_code and response_flags.

// Unknown is Istio's value for a label the proxy cannot know.
const Unknown = "unknown"

// Reporters: who reports a request, as Istio's reporter label.
const (
	ReporterWaypoint    = "waypoint"
	ReporterSource      = "source"
	ReporterDestination = "destination"
)

// Workload is what is known of one end of a request: Istio's
// *_workload, *_workload_namespace, *_principal, *_app and *_version
// labels (app and version are the canonical service and revision). A
// field nobody knows is Unknown. Values are shared and never changed once
// built: a connection or an endpoint keeps a pointer to one.
type Workload struct {
	Name, Namespace, Principal, App, Version string
}

// UnknownWorkload is a workload nothing is known of.
var UnknownWorkload = &Workload{Name: Unknown, Namespace: Unknown, Principal: Unknown, App: Unknown, Version: Unknown}

// Service is the destination service of a request: its host (FQDN), name
// and namespace. Shared and never changed once built, as Workload.
type Service struct {
	Host, Name, Namespace string
}

// UnknownService is the service of a request that reached none.
var UnknownService = &Service{Host: Unknown, Name: Unknown, Namespace: Unknown}

// ServiceOf splits a host of the form name.namespace.svc[.domain] into a
// Service; another host keeps itself as its name and an unknown namespace,
// as Istio labels a ServiceEntry host.
func ServiceOf(host string) *Service {
	if host == "" {
		return UnknownService
	}
	parts := strings.SplitN(host, ".", 4)
	if len(parts) >= 3 && parts[2] == "svc" {
		return &Service{Host: host, Name: parts[0], Namespace: parts[1]}
	}
	return &Service{Host: host, Name: host, Namespace: Unknown}
}

// WorkloadOfPrincipal is what a caller's verified identity says of it: its
// principal and namespace; "" (a plaintext caller) is UnknownWorkload. The
// identity is in the form authorization names it (TRUST_DOMAIN/ns/NS/sa/SA)
// or a SPIFFE URI; the principal label is the URI, as Istio's
// source_principal is.
func WorkloadOfPrincipal(principal string) *Workload {
	if principal == "" {
		return UnknownWorkload
	}
	rest, _ := strings.CutPrefix(principal, "spiffe://")
	w := *UnknownWorkload
	w.Principal = "spiffe://" + rest
	parts := strings.Split(rest, "/")
	if len(parts) == 5 && parts[1] == "ns" && parts[3] == "sa" && parts[2] != "" {
		w.Namespace = parts[2]
	}
	return &w
}

// IstioLabels are one request's labels.
type IstioLabels struct {
	Reporter    string
	Protocol    string // request_protocol: the codec's name
	Source      *Workload
	Service     *Service
	Destination *Workload
	Code        string // response_code
	Flags       string // response_flags, "-" for none
}

// is reports whether l names the same things as o, by the identity of the
// shared values: what a connection compares to reuse its last series.
func (l *IstioLabels) is(o *IstioLabels) bool {
	return l.Source == o.Source && l.Service == o.Service && l.Destination == o.Destination &&
		l.Code == o.Code && l.Flags == o.Flags && l.Reporter == o.Reporter && l.Protocol == o.Protocol
}

func (l *IstioLabels) values() []string {
	s, d, svc := l.Source, l.Destination, l.Service
	mtls := "none"
	if s.Principal != Unknown {
		mtls = "mutual_tls"
	}
	return []string{
		l.Reporter,
		s.Name, s.Namespace, s.Principal, s.App, s.Version, s.App, s.Version,
		svc.Host, svc.Name, svc.Namespace,
		d.Name, d.Namespace, d.Principal, d.App, d.Version, d.App, d.Version,
		l.Protocol, l.Code, l.Flags, mtls,
	}
}

var istioLabelNames = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
	"source_canonical_service", "source_canonical_revision",
	"destination_service", "destination_service_name", "destination_service_namespace",
	"destination_workload", "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
	"destination_canonical_service", "destination_canonical_revision",
	"request_protocol", "response_code", "response_flags", "connection_security_policy",
}

// responseCodeIndex is response_code's place in istioLabelNames.
var responseCodeIndex = slices.Index(istioLabelNames, "response_code")

// tcpLabelNames are the TCP connection metrics' labels: Istio's, without
// response_code. A downstream connection is counted when it opens, before
// any request names a destination, so its destination labels are unknown.
var tcpLabelNames = slices.DeleteFunc(slices.Clone(istioLabelNames), func(s string) bool { return s == "response_code" })

// Istio's default buckets: request durations in milliseconds, sizes in
// bytes (powers of ten up to 100 MB).
var (
	istioDurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
	istioSizeBuckets     = prometheus.ExponentialBuckets(1, 10, 9)
)

// istioMetrics are the standard metrics; nil in Metrics when turned off.
type istioMetrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	reqBytes   *prometheus.HistogramVec
	respBytes  *prometheus.HistogramVec
	tcpOpened  *prometheus.CounterVec
	tcpClosed  *prometheus.CounterVec
	mu         sync.RWMutex
	series     map[string]*IstioSeries
	maxSeries  int
	overflowed *prometheus.CounterVec
}

// IstioSeries counts and times the requests of one label set. A connection
// keeps the last one it used and reuses it while the labels are the same
// values (IstioLabels.is), which costs no hashing.
type IstioSeries struct {
	labels    IstioLabels
	count     prometheus.Counter
	duration  prometheus.Observer
	reqBytes  prometheus.Observer
	respBytes prometheus.Observer
}

// Is reports whether s is the series of l.
func (s *IstioSeries) Is(l *IstioLabels) bool { return s != nil && s.labels.is(l) }

// Observe records one request that took d, with its request and response
// sizes in bytes.
func (s *IstioSeries) Observe(d time.Duration, reqBytes, respBytes int) {
	s.count.Inc()
	s.duration.Observe(float64(d) / float64(time.Millisecond))
	s.reqBytes.Observe(float64(reqBytes))
	s.respBytes.Observe(float64(respBytes))
}

// maxIstioSeries caps the distinct label sets of the request metrics. The
// labels come from config (services, workloads) and the codecs' bounded
// code maps, never from a request's own values, so the cap is a guard
// against a mesh far larger than a proxy should serve, not against traffic.
const maxIstioSeries = 100_000

func newIstioMetrics() *istioMetrics {
	im := &istioMetrics{series: map[string]*IstioSeries{}, maxSeries: maxIstioSeries}
	im.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_requests_total",
		Help: "Requests handled, as Istio's standard metric (MetaProtocol requests: request_protocol is the codec).",
	}, istioLabelNames)
	im.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "istio_request_duration_milliseconds",
		Help:    "Time from a request's arrival to its answer, in milliseconds, as Istio's standard metric.",
		Buckets: istioDurationBuckets,
	}, istioLabelNames)
	im.reqBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "istio_request_bytes",
		Help:    "Request sizes (whole frames), as Istio's standard metric.",
		Buckets: istioSizeBuckets,
	}, istioLabelNames)
	im.respBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "istio_response_bytes",
		Help:    "Response sizes (whole frames; 0 when there was none), as Istio's standard metric.",
		Buckets: istioSizeBuckets,
	}, istioLabelNames)
	im.tcpOpened = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_tcp_connections_opened_total",
		Help: "Downstream connections opened, as Istio's standard metric.",
	}, tcpLabelNames)
	im.tcpClosed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_tcp_connections_closed_total",
		Help: "Downstream connections closed, as Istio's standard metric.",
	}, tcpLabelNames)
	im.overflowed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_istio_series_overflow_total",
		Help: "Requests not counted in Istio's metrics because their label sets passed the cap.",
	}, nil)
	return im
}

func (im *istioMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{im.requests, im.duration, im.reqBytes, im.respBytes, im.tcpOpened, im.tcpClosed, im.overflowed}
}

// IstioEnabled reports whether the proxy exports Istio's metrics.
func (m *Metrics) IstioEnabled() bool { return m.istio != nil }

// DisableIstio stops exporting Istio's metrics (--istio-metrics=false).
// Call it before the proxy serves.
func (m *Metrics) DisableIstio() {
	if m.istio == nil {
		return
	}
	for _, c := range m.istio.collectors() {
		m.Registry.Unregister(c)
	}
	m.istio = nil
}

// IstioSeries is the series of l; nil when Istio's metrics are off or the
// cap on label sets is reached (the request is then counted in
// rosetta_istio_series_overflow_total).
func (m *Metrics) IstioSeries(l *IstioLabels) *IstioSeries {
	im := m.istio
	if im == nil {
		return nil
	}
	vals := l.values()
	key := strings.Join(vals, "\x00")
	im.mu.RLock()
	s := im.series[key]
	im.mu.RUnlock()
	if s != nil {
		return s
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if s = im.series[key]; s != nil {
		return s
	}
	if len(im.series) >= im.maxSeries {
		im.overflowed.WithLabelValues().Inc()
		return nil
	}
	s = &IstioSeries{
		labels:    *l,
		count:     im.requests.WithLabelValues(vals...),
		duration:  im.duration.WithLabelValues(vals...),
		reqBytes:  im.reqBytes.WithLabelValues(vals...),
		respBytes: im.respBytes.WithLabelValues(vals...),
	}
	im.series[key] = s
	return s
}

// IstioConnection counts a downstream connection opened (open) or closed,
// from source, of protocol.
func (m *Metrics) IstioConnection(reporter, protocol string, source *Workload, open bool) {
	im := m.istio
	if im == nil {
		return
	}
	l := IstioLabels{Reporter: reporter, Protocol: protocol, Source: source, Service: UnknownService, Destination: UnknownWorkload, Flags: "-"}
	vals := l.values()
	vals = slices.Delete(vals, responseCodeIndex, responseCodeIndex+1)
	vec := im.tcpClosed
	if open {
		vec = im.tcpOpened
	}
	vec.WithLabelValues(vals...).Inc()
}
