package upstream

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// committed builds and commits one STATIC cluster of n endpoints with od
// as its outlier detection, as a config update does.
func committed(t *testing.T, n int, od *clusterv3.OutlierDetection) *Cluster {
	t.Helper()
	var lbs []*endpointv3.LbEndpoint
	for i := 0; i < n; i++ {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: fmt.Sprintf("10.0.0.%d", i+1), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 20880}}}},
		}}})
	}
	c := &clusterv3.Cluster{
		Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:   &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}},
		OutlierDetection: od,
	}
	m := NewManager(nil)
	clusters, err := m.Build([]*clusterv3.Cluster{c}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Commit(clusters)
	return clusters["c"]
}

func ejected(eps []*Endpoint) int {
	n := 0
	for _, e := range eps {
		if !e.Healthy() {
			n++
		}
	}
	return n
}

// maxEjectionPercent caps the endpoints ejected at once, and one is
// ejected whatever the percentage when none is.
func TestMaxEjectionPercent(t *testing.T) {
	cases := []struct {
		percent *wrapperspb.UInt32Value
		want    int
	}{
		{wrapperspb.UInt32(50), 2},
		{wrapperspb.UInt32(10), 1},
		{wrapperspb.UInt32(0), 1},
		{nil, 4}, // unset: Rosetta's default, every endpoint
	}
	for _, c := range cases {
		cl := committed(t, 4, &clusterv3.OutlierDetection{
			ConsecutiveLocalOriginFailure: wrapperspb.UInt32(1), MaxEjectionPercent: c.percent,
		})
		for _, e := range cl.Endpoints {
			e.fail()
		}
		if got := ejected(cl.Endpoints); got != c.want {
			t.Errorf("max_ejection_percent %v: %d of 4 ejected, want %d", c.percent, got, c.want)
		}
	}
}

// An endpoint ejected for less than the interval stays out until the next
// sweep, one interval after its ejection.
func TestEjectionEndsAtASweep(t *testing.T) {
	cl := committed(t, 2, &clusterv3.OutlierDetection{
		ConsecutiveLocalOriginFailure: wrapperspb.UInt32(1),
		BaseEjectionTime:              durationpb.New(100 * time.Millisecond),
		Interval:                      durationpb.New(time.Second),
	})
	e := cl.Endpoints[0]
	before := time.Now()
	e.fail()
	after := time.Now()
	until := time.Unix(0, e.ejectedUntil.Load())
	if until.Before(before.Add(time.Second)) || until.After(after.Add(time.Second)) {
		t.Fatalf("ejected for %v, want the 1s interval (base 100ms)", until.Sub(before))
	}
}

// Each interval an endpoint stays in after an ejection takes one doubling
// off its next ejection; without an interval the backoff keeps growing.
func TestHealthyIntervalsLowerTheBackoff(t *testing.T) {
	for _, c := range []struct {
		interval time.Duration
		want     time.Duration
	}{
		{100 * time.Millisecond, time.Second}, // three healthy intervals after two ejections: back to the base
		{0, 4 * time.Second},                  // two ejections in a row: the third doubles twice
	} {
		od := &clusterv3.OutlierDetection{ConsecutiveLocalOriginFailure: wrapperspb.UInt32(1), BaseEjectionTime: durationpb.New(time.Second)}
		if c.interval > 0 {
			od.Interval = durationpb.New(c.interval)
		}
		e := committed(t, 1, od).Endpoints[0]
		e.fail()
		e.fail()
		// Back in service for three intervals (300 ms).
		e.ejectedUntil.Store(time.Now().Add(-300 * time.Millisecond).UnixNano())
		before := time.Now()
		e.fail()
		got := time.Unix(0, e.ejectedUntil.Load()).Sub(before)
		if got < c.want || got > c.want+100*time.Millisecond {
			t.Errorf("interval %v: third ejection lasts %v, want %v", c.interval, got, c.want)
		}
	}
}

func TestOutlierSettingsChecked(t *testing.T) {
	for _, od := range []*clusterv3.OutlierDetection{
		{Interval: durationpb.New(0)},
		{MaxEjectionPercent: wrapperspb.UInt32(101)},
	} {
		if _, err := outlier(od); err == nil {
			t.Errorf("%v accepted", od)
		}
	}
}
