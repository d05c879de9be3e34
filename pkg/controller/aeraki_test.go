package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// TestAerakiNamesAreTheirOwn: an Aeraki MetaRouter, as addTo names it,
// and a Rosetta MetaRouter of the same name routing the same host are two
// objects: the older keeps the host and the other's status names it.
func TestAerakiNamesAreTheirOwn(t *testing.T) {
	in := &Inputs{}
	if err := in.AddYAML([]byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: tcp-dubbo, number: 20880, protocol: TCP}]
  endpoints: [{address: 127.0.0.1}]
`)); err != nil {
		t.Fatal(err)
	}
	router := func(name string, created time.Time) *v1alpha1.MetaRouter {
		return &v1alpha1.MetaRouter{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", Generation: 1, CreationTimestamp: metav1.NewTime(created)},
			Spec: v1alpha1.MetaRouterSpec{Hosts: []string{"greeter.demo.svc.cluster.local"},
				Routes: []v1alpha1.MetaRoute{{Name: "all", Route: []v1alpha1.MetaRouteDestination{{Destination: v1alpha1.Destination{Host: "greeter.demo.svc.cluster.local"}}}}}}}
	}
	now := time.Now()
	in.MetaRouters = append(in.MetaRouters, router("greeter", now), router("greeter@"+AerakiMetaProtocolGroup, now.Add(-time.Minute)))
	b := &Builder{Options: Options{Resolve: func(_ context.Context, h string) ([]string, error) { return []string{h}, nil }}}
	ix := b.Build(in)
	for k, st := range ix.Statuses {
		t.Logf("%s: %+v", k, st.Conditions)
	}
	rosetta := ix.Statuses["demo/greeter"].Conditions
	if len(rosetta) == 0 || rosetta[0].Status != metav1.ConditionFalse || rosetta[0].Reason != v1alpha1.ReasonConflict ||
		!strings.Contains(rosetta[0].Message, "demo/greeter@metaprotocol.aeraki.io") {
		t.Errorf("the Rosetta MetaRouter: %+v", rosetta)
	}
	if aeraki := ix.Statuses["demo/greeter@metaprotocol.aeraki.io"].Conditions; len(aeraki) == 0 || aeraki[0].Status != metav1.ConditionTrue {
		t.Errorf("the Aeraki MetaRouter: %+v", aeraki)
	}
}
