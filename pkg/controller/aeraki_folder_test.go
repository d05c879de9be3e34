package controller

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// TestFolderAerakiAndRosettaOfOneName: in folder mode, an Aeraki MetaRouter
// and a Rosetta MetaRouter of the same namespace and name are two objects,
// as in Kubernetes mode: each has its status, and the host both route goes
// to the older, the newer's status saying so.
func TestFolderAerakiAndRosettaOfOneName(t *testing.T) {
	router := func(apiVersion, created, subset string) string {
		return "apiVersion: " + apiVersion + `
kind: MetaRouter
metadata: {name: greeter, namespace: demo, creationTimestamp: "` + created + `"}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  routes:
  - name: all
    route: [{destination: {host: greeter.demo.svc.cluster.local, subset: ` + subset + `}}]
`
	}
	dir := t.TempDir()
	for name, data := range map[string]string{
		"service.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: greeter, namespace: demo}\nspec: {ports: [{name: tcp-dubbo, port: 20880}]}\n",
		"aeraki.yaml":  router("metaprotocol.aeraki.io/v1alpha1", "2026-01-01T00:00:00Z", "old"),
		"rosetta.yaml": router("metaprotocol.rosetta.dev/v1alpha1", "2026-01-02T00:00:00Z", "new"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ix := (&Builder{Options: Options{Resolve: fakeResolver}}).Build(in)
	aeraki, rosetta := ix.Statuses["demo/greeter@metaprotocol.aeraki.io"], ix.Statuses["demo/greeter"]
	if len(aeraki.Conditions) == 0 || aeraki.Conditions[0].Status != "True" {
		t.Fatalf("the older (Aeraki's) MetaRouter: %+v; statuses %v", aeraki, ix.Statuses)
	}
	if len(rosetta.Conditions) == 0 || rosetta.Conditions[0].Status != "False" || rosetta.Conditions[0].Reason != "HostConflict" {
		t.Fatalf("the newer (Rosetta's) MetaRouter: %+v", rosetta)
	}
	res := ix.Generate(&Proxy{ID: "p", Namespace: "demo"})
	if got := routeCluster(res, "greeter.demo.svc.cluster.local_20880"); got != "outbound|20880|old|greeter.demo.svc.cluster.local" {
		t.Fatalf("the route goes to %q, want the older MetaRouter's subset", got)
	}
}

// routeCluster is the cluster of the first route of a route configuration.
func routeCluster(res *config.Resources, name string) string {
	for _, rc := range res.Routes {
		if rc.GetName() == name && len(rc.GetRoutes()) > 0 {
			return rc.GetRoutes()[0].GetRoute().GetCluster()
		}
	}
	return ""
}
