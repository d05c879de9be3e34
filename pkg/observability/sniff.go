package observability

import "github.com/prometheus/client_golang/prometheus"

// sniffMetrics count what the first bytes of the connections of listeners
// whose codec is "auto" told the proxy.
type sniffMetrics struct {
	sniffed *prometheus.CounterVec
	failed  *prometheus.CounterVec
}

func (m *Metrics) registerSniff() {
	s := &m.sniff
	s.sniffed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_downstream_sniffed_total",
		Help: "Downstream connections of auto listeners served with the protocol their first bytes matched, by listener and protocol.",
	}, []string{"listener", "protocol"})
	s.failed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_downstream_sniff_failures_total",
		Help: "Downstream connections of auto listeners closed because their first bytes matched no protocol, by listener and reason (no_match: every protocol refused them; undecided: none was sure within the bytes sniffed; timeout: the caller sent too little in time).",
	}, []string{"listener", "reason"})
	m.Registry.MustRegister(s.sniffed, s.failed)
}

// Sniffed counts a connection of an auto listener served with protocol.
func (m *Metrics) Sniffed(listener, protocol string) {
	m.sniff.sniffed.WithLabelValues(listener, protocol).Inc()
}

// SniffFailed counts a connection of an auto listener closed because no
// protocol could be told from its first bytes, for reason.
func (m *Metrics) SniffFailed(listener, reason string) {
	m.sniff.failed.WithLabelValues(listener, reason).Inc()
}
