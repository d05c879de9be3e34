package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Metrics are the controller's Prometheus metrics about its inputs (the
// xDS server's are in pkg/xds).
type Metrics struct {
	// Rejected is the number of documents of the config source that the
	// controller rejects now, by reason (ReasonInvalidYAML, ...): a gauge,
	// so it falls back to 0 once the files are fixed.
	Rejected *prometheus.GaugeVec
	// SteeredPorts counts the service ports steered to a waypoint;
	// Unsteered the opted-in Services that are not, by reason;
	// PortConflicts the Services that lose a shared port number.
	SteeredPorts  prometheus.Gauge
	Unsteered     *prometheus.GaugeVec
	PortConflicts prometheus.Gauge
	// Unchanged counts reads of the inputs that found nothing changed
	// since the last push (a ConfigMap, a status, a file rewritten as it
	// was), and so pushed nothing.
	Unchanged prometheus.Counter
}

// unsteeredReasons are the reasons Unsteered always reports.
var unsteeredReasons = []string{ReasonWaypointNotFound, ReasonConflictingVirtualService, ReasonNoSteeringPort, ReasonSteeringServiceTaken}

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
	m.SteeredPorts = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rosetta_controller_steered_ports",
		Help: "Service ports whose callers are steered to a Rosetta waypoint, each on a waypoint port of its own.",
	})
	m.Unsteered = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rosetta_controller_unsteered_services",
		Help: "Services that opt in to steering and are not steered, by reason (their Steered condition says more).",
	}, []string{"reason"})
	m.PortConflicts = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rosetta_controller_port_conflicts",
		Help: "Services not served on a MetaProtocol port number because an older Service of their namespace has it too, and not steered (their PortConflict condition says which).",
	})
	m.Unchanged = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rosetta_controller_unchanged_reads_total",
		Help: "Reads of the config, after a change was signalled, that found nothing a proxy's config depends on changed, and so built and pushed nothing.",
	})
	for _, r := range rejectReasons {
		m.Rejected.WithLabelValues(r)
	}
	for _, r := range unsteeredReasons {
		m.Unsteered.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Rejected, m.SteeredPorts, m.Unsteered, m.PortConflicts, m.Unchanged)
	}
	return m
}

// setSteering sets the steering gauges from an index.
func (m *Metrics) setSteering(ix *Index) {
	if m == nil {
		return
	}
	steered := 0
	for _, ports := range ix.steer.ports {
		steered += len(ports)
	}
	m.SteeredPorts.Set(float64(steered))
	unsteered := map[string]int{}
	conflicts := 0
	for _, conds := range ix.steer.conditions {
		for _, c := range conds {
			switch {
			case c.Type == ConditionSteered && c.Status == metav1.ConditionFalse:
				unsteered[c.Reason]++
			case c.Type == ConditionPortConflict:
				conflicts++
			}
		}
	}
	for _, r := range unsteeredReasons {
		m.Unsteered.WithLabelValues(r).Set(float64(unsteered[r]))
	}
	m.PortConflicts.Set(float64(conflicts))
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

// noChange counts a read that found nothing changed.
func (m *Metrics) noChange() {
	if m != nil {
		m.Unchanged.Inc()
	}
}
