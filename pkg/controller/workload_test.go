package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

func TestPodWorkloadIsItsDeployment(t *testing.T) {
	yes := true
	owned := func(kind, name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-x", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{Kind: kind, Name: name, Controller: &yes}}}}
	}
	for _, c := range []struct {
		pod  *corev1.Pod
		want string
	}{
		{owned("ReplicaSet", "greeter-v1-5d8f7c9b6", map[string]string{"pod-template-hash": "5d8f7c9b6"}), "greeter-v1"},
		{owned("ReplicaSet", "bare-rs", nil), "bare-rs"},
		{owned("StatefulSet", "redis", nil), "redis"},
		{&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "lonely"}}, "lonely"},
	} {
		if got := podWorkload(c.pod); got != c.want {
			t.Errorf("podWorkload(%v) = %q, want %q", c.pod.OwnerReferences, got, c.want)
		}
	}
}

func TestWorkloadMetadataRoundTrips(t *testing.T) {
	e := Endpoint{Workload: "greeter-v1", Namespace: "shop", ServiceAccount: "shop/greeter",
		Labels: map[string]string{"app": "greeter", "version": "v1", "service.istio.io/canonical-name": "greeter-svc"}}
	lb := &endpointv3.LbEndpoint{}
	addWorkloadMetadata(lb, &e, "example.org")
	w, ok, err := config.ParseWorkload(lb.GetMetadata())
	want := config.WorkloadMetadata{Name: "greeter-v1", Namespace: "shop", App: "greeter-svc", Version: "v1", Cluster: defaultClusterID, Principal: "spiffe://example.org/ns/shop/sa/greeter"}
	if err != nil || !ok || w != want {
		t.Fatalf("ParseWorkload = %+v, %v, %v; want %+v", w, ok, err, want)
	}
	empty := &endpointv3.LbEndpoint{}
	addWorkloadMetadata(empty, &Endpoint{}, "example.org")
	if empty.GetMetadata() != nil {
		t.Errorf("an endpoint nothing is known of got metadata %v", empty.GetMetadata())
	}
}
