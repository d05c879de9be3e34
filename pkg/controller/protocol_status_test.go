package controller

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	redisv1 "github.com/rosetta-mesh/rosetta/protocols/redis/api/v1alpha1"
)

// TestProtocolStatusWriter: the statuses of a translator's objects (the
// Redis ones here) are patched onto the objects, at the GVR its kind
// registers, and an object whose status is already right is not written
// again. (An in-memory API server; the e2e tests use a real one.)
func TestProtocolStatusWriter(t *testing.T) {
	in := &Inputs{}
	if err := in.AddYAML(mustRead(t, "../../protocols/redis/control/testdata/golden/redis-cluster.yaml")); err != nil {
		t.Fatal(err)
	}
	ix := (&Builder{Options: Options{Resolve: fakeResolver}}).Build(in)
	var objs []runtime.Object
	add := func(kind string, o any) {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetAPIVersion(redisv1.SchemeGroupVersion.String())
		u.SetKind(kind)
		objs = append(objs, u)
	}
	for _, kind := range []string{"RedisService", "RedisDestination"} {
		for _, o := range in.Objects[kind] {
			add(kind, o)
		}
	}
	gvr := func(kind string) schema.GroupVersionResource {
		k, _ := kindNamed(kind)
		return k.GVR
	}
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		gvr("RedisService"): "RedisServiceList", gvr("RedisDestination"): "RedisDestinationList",
	}, objs...)
	w := &StatusWriter{Client: client, Kind: "Redis", Current: func(key string) (StatusObject, bool) {
		kind, ns, name, ok := splitStatusKey(key)
		if !ok {
			return StatusObject{}, false
		}
		u, err := client.Resource(gvr(kind)).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return StatusObject{}, false
		}
		var st v1alpha1.MetaRouterStatus
		if m, ok := u.Object["status"].(map[string]any); ok {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &st); err != nil {
				t.Fatal(err)
			}
		}
		return StatusObject{GVR: gvr(kind), Namespace: ns, Name: name, Generation: u.GetGeneration(), Status: st}, true
	}}
	w.Set(ix.ProtocolStatuses())
	if failed := w.writeAll(context.Background()); failed != 0 {
		t.Fatalf("%d writes failed", failed)
	}
	obj, ok := w.Current("RedisDestination/shop/orders-redis-copy")
	st := obj.Status
	if !ok || obj.Generation != 1 || len(st.Conditions) != 2 || st.Conditions[0].Reason != redisv1.ReasonConflict || st.Conditions[0].LastTransitionTime.IsZero() {
		t.Fatalf("status = %+v", st)
	}
	obj, _ = w.Current("RedisService/shop/orders@redis.aeraki.io") // read from Aeraki's group
	st = obj.Status
	if len(st.Conditions) != 2 || st.Conditions[1].Reason != redisv1.ReasonUnknownHost {
		t.Fatalf("status = %+v", st)
	}
	before := len(client.Actions())
	if failed := w.writeAll(context.Background()); failed != 0 {
		t.Fatalf("%d writes failed", failed)
	}
	for _, a := range client.Actions()[before:] {
		if a.GetVerb() == "patch" {
			t.Fatalf("an unchanged status was written again: %v", a)
		}
	}
}
