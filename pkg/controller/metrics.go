package controller

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the controller's Prometheus metrics about its inputs (the
// xDS server's are in pkg/xds).
type Metrics struct {
	// Rejected is the number of documents of the config source that the
	// controller rejects now, by reason (ReasonInvalidYAML, ...): a gauge,
	// so it falls back to 0 once the files are fixed.
	Rejected *prometheus.GaugeVec
}

// rejectReasons are the reasons Rejected always reports, 0 when none.
var rejectReasons = []string{ReasonInvalidYAML, ReasonMissingType, ReasonUnknownKind, ReasonUnknownGroup, ReasonInvalidObject}

// NewMetrics creates the metrics and registers them with reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Rejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rosetta_controller_config_rejected",
			Help: "Documents of the config folder the controller rejects now (their file's last good version stays in force), by reason: invalid_yaml, missing_type, unknown_kind, unknown_group, invalid_object.",
		}, []string{"reason"}),
	}
	for _, r := range rejectReasons {
		m.Rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Rejected)
	}
	return m
}

// setRejected sets Rejected from the unused documents of one read.
func (m *Metrics) setRejected(unused []Unused) {
	if m == nil {
		return
	}
	n := map[string]int{}
	for _, u := range rejected(unused) {
		n[u.Reason]++
	}
	for _, r := range rejectReasons {
		m.Rejected.WithLabelValues(r).Set(float64(n[r]))
	}
}
