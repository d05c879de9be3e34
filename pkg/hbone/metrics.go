package hbone

import "github.com/prometheus/client_golang/prometheus"

// Reasons a CONNECT stream is refused, the reason label of
// rosetta_hbone_streams_refused_total.
const (
	// RefusedMethod: not a CONNECT (answered 405).
	RefusedMethod = "method_not_allowed"
	// RefusedBadAuthority: the :authority is not an ip:port (400).
	RefusedBadAuthority = "bad_authority"
	// RefusedUnknownAuthority: no listener serves the destination (503).
	RefusedUnknownAuthority = "unknown_authority"
	// RefusedMaxConnections: the listener that serves the destination has
	// max_connections open (503).
	RefusedMaxConnections = "max_connections"
)

// Metrics count what the HBONE server does. They sit in the proxy's
// registry, next to its per-listener ones, which count the streams a
// listener serves with transport "hbone".
type Metrics struct {
	conns        prometheus.Gauge
	connsRefused prometheus.Counter
	handshakes   prometheus.Counter
	accepted     prometheus.Counter
	refused      *prometheus.CounterVec
}

// NewMetrics registers the server's metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rosetta_hbone_connections_active",
			Help: "Open HBONE (HTTP/2 over Istio mutual TLS) connections, handshakes included.",
		}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rosetta_hbone_connections_refused_total",
			Help: "HBONE connections closed as they were accepted because the server had its maximum open.",
		}),
		handshakes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rosetta_hbone_tls_handshake_errors_total",
			Help: "HBONE connections closed because their TLS handshake failed (no client certificate, an untrusted one, no h2 ALPN, a timeout).",
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rosetta_hbone_streams_accepted_total",
			Help: "CONNECT streams answered 200 and handed to the listener that serves their destination.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_hbone_streams_refused_total",
			Help: "HBONE streams refused, by reason: method_not_allowed (405), bad_authority (400), unknown_authority (503, no listener serves the destination), max_connections (503).",
		}, []string{"reason"}),
	}
	for _, r := range []string{RefusedMethod, RefusedBadAuthority, RefusedUnknownAuthority, RefusedMaxConnections} {
		m.refused.WithLabelValues(r)
	}
	reg.MustRegister(m.conns, m.connsRefused, m.handshakes, m.accepted, m.refused)
	return m
}
