package controller

import "testing"

// TestTraceSamplingReachesEveryListener: with the mesh-wide sampling set,
// each generated listener traces at that percentage; without it, none does.
func TestTraceSamplingReachesEveryListener(t *testing.T) {
	in := &Inputs{}
	if err := in.AddYAML(mustRead(t, "testdata/golden/authorization.yaml")); err != nil {
		t.Fatal(err)
	}
	proxy := &Proxy{ID: "p", Namespace: "demo"}
	const listener = "greeter.demo.svc.cluster.local_20880"

	off := (&Builder{Options: Options{Resolve: fakeResolver}}).Build(in)
	if tr := listenerProxy(t, off.Generate(proxy), listener).GetTracing(); tr != nil {
		t.Errorf("tracing %v without --trace-sampling, want none", tr)
	}
	pct := 2.5
	on := (&Builder{Options: Options{Resolve: fakeResolver, TraceSampling: &pct}}).Build(in)
	tr := listenerProxy(t, on.Generate(proxy), listener).GetTracing()
	if tr == nil || tr.GetRandomSamplingPercentage() != pct {
		t.Errorf("tracing %v, want random_sampling_percentage %v", tr, pct)
	}
}
