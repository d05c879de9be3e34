package xds

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the control plane's Prometheus metrics.
type Metrics struct {
	Pushes        *prometheus.CounterVec
	PushDuration  prometheus.Histogram
	ResourcesSent *prometheus.CounterVec
	BytesSent     *prometheus.CounterVec
	Propagation   *prometheus.HistogramVec
	NACKs         *prometheus.CounterVec
	Connected     prometheus.Gauge
	// StreamsRefused counts streams refused by authentication (or a
	// node id another proxy holds), by reason.
	StreamsRefused *prometheus.CounterVec
	// ClaimMismatches counts proxies whose node metadata claimed another
	// namespace or identity than they proved, by field.
	ClaimMismatches *prometheus.CounterVec
	// HandshakeFailures counts failed TLS handshakes.
	HandshakeFailures prometheus.Counter
	// ScopeGenerations counts the scopes generated (and hashed), by why:
	// "connect" for the first proxy of a scope, "push" for a change that
	// reaches the scope, "lazy" for a lazy proxy whose learned set
	// changed. A change that reaches none generates nothing.
	ScopeGenerations *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_xds_pushes_total", Help: "Snapshots set for a proxy, by resource type that changed.",
		}, []string{"type"}),
		PushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rosetta_xds_push_duration_seconds", Help: "Time to generate and set the snapshots of every connected proxy for one push.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		ResourcesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_xds_resources_sent_total", Help: "Resources sent to proxies, by type.",
		}, []string{"type"}),
		BytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_xds_bytes_sent_total", Help: "Encoded bytes of resources sent to proxies, by type.",
		}, []string{"type"}),
		Propagation: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rosetta_xds_propagation_seconds", Help: "Time from the first object change behind a push to the proxy's ACK, by type.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"type"}),
		NACKs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_xds_nacks_total", Help: "Responses proxies refused, by type.",
		}, []string{"type"}),
		Connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rosetta_xds_connected_proxies", Help: "Proxies with an open xDS stream.",
		}),
		StreamsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_xds_streams_refused_total", Help: "xDS streams refused, by reason: no_credentials, invalid_certificate, invalid_token, token_review_unavailable, node_id_changed, node_id_conflict, other.",
		}, []string{"reason"}),
		ClaimMismatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_xds_claim_mismatches_total", Help: "Authenticated proxies whose node metadata claimed another namespace or identity than they proved (the proved one is used), by field.",
		}, []string{"field"}),
		ScopeGenerations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_xds_scope_generations_total", Help: "Scopes (proxies with one namespace, labels, mode, address and identity share one) whose resources were generated and hashed, by reason: connect (the first proxy of a scope), push (a change that reaches the scope), lazy (a lazy proxy's learned destinations changed).",
		}, []string{"reason"}),
		HandshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rosetta_xds_tls_handshake_failures_total", Help: "Failed TLS handshakes on the xDS port (untrusted client certificates, clients that do not trust the controller, TCP probes).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Pushes, m.PushDuration, m.ResourcesSent, m.BytesSent, m.Propagation, m.NACKs, m.Connected,
			m.StreamsRefused, m.ClaimMismatches, m.HandshakeFailures, m.ScopeGenerations)
	}
	return m
}

// shortType turns a type URL into a metric label ("Cluster").
func shortType(typeURL string) string {
	for i := len(typeURL) - 1; i >= 0; i-- {
		if typeURL[i] == '.' {
			return typeURL[i+1:]
		}
	}
	return typeURL
}
