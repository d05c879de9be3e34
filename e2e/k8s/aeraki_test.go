package k8s

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// aerakiCRDs are Aeraki's CRDs, test data the chart does not install.
var aerakiCRDs = filepath.Join("testdata", "aeraki", "crds.yaml")

// aerakiMesh is a greeter service of namespace aeraki on port, with
// subsets v1 and v2 on two providers' ports, kept to its namespace.
func aerakiMesh(port, v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter, namespace: aeraki}
spec:
  hosts: [greeter.aeraki.svc.cluster.local]
  exportTo: ["."]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: tcp-dubbo, number: %d, protocol: TCP}]
  endpoints:
  - {address: 127.0.0.1, ports: {tcp-dubbo: %d}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {tcp-dubbo: %d}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: aeraki}
spec:
  host: greeter.aeraki.svc.cluster.local
  exportTo: ["."]
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, port, v1, v2)
}

// aerakiRouter is a MetaRouter of apiVersion's group for the greeter:
// sayHello to hello, every other call to rest.
func aerakiRouter(apiVersion, hello, rest string) string {
	return fmt.Sprintf(`apiVersion: %s
kind: MetaRouter
metadata: {name: greeter, namespace: aeraki}
spec:
  hosts: [greeter.aeraki.svc.cluster.local]
  routes:
  - name: hello
    match: {attributes: {method: {exact: sayHello}}}
    route: [{destination: {host: greeter.aeraki.svc.cluster.local, subset: %s}}]
  - name: rest
    route: [{destination: {host: greeter.aeraki.svc.cluster.local, subset: %s}}]
`, apiVersion, hello, rest)
}

// acceptedOf is the Accepted condition of a MetaRouter of resource
// (metarouters.<group>) for its current generation.
func acceptedOf(t *testing.T, c *kubeenv.Cluster, resource string) (status, reason, msg string) {
	t.Helper()
	out := c.MustKubectl(t, "", "get", resource, "greeter", "-n", "aeraki", "-o", "json")
	var st routerStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	for _, cd := range st.Status.Conditions {
		if cd.Type == "Accepted" && st.Status.ObservedGeneration == st.Metadata.Generation {
			return cd.Status, cd.Reason, cd.Message
		}
	}
	return "", "", ""
}

// TestAerakiResources: with Aeraki's CRDs installed, the controller in
// Kubernetes mode reads Aeraki's MetaRouter: the proxy's routes and real
// calls follow it and its edits, and its status is written. A Rosetta
// MetaRouter of the same name for the same host then runs side by side:
// the older (Aeraki's) keeps the host and the Rosetta one says so in its
// status, until the Aeraki one is deleted and the Rosetta one takes over.
func TestAerakiResources(t *testing.T) {
	c := needCluster(t)
	if out, err := c.Kubectl("", "apply", "-f", aerakiCRDs); err != nil {
		t.Fatalf("install Aeraki's CRDs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Later tests name "metarouter" without a group: leave no second
		// MetaRouter kind behind.
		if out, err := c.Kubectl("", "delete", "-f", aerakiCRDs, "--wait=true", "--timeout=60s"); err != nil {
			t.Errorf("delete Aeraki's CRDs: %v\n%s", err, out)
		}
		_, _ = c.Kubectl("", "delete", "serviceentry,destinationrule,metarouters.metaprotocol.rosetta.dev", "--all", "-n", "aeraki")
	})
	c.MustKubectl(t, "", "wait", "--for=condition=Established", "-f", aerakiCRDs, "--timeout=60s")
	// The chart lets the controller read Aeraki's kinds and write their
	// status, and no more.
	checkCanI(t, c, []canI{
		{"watch", "metarouters.metaprotocol.aeraki.io", "", "yes"},
		{"patch", "metarouters.metaprotocol.aeraki.io --subresource=status", "aeraki", "yes"},
		{"update", "metarouters.metaprotocol.aeraki.io", "aeraki", "no"},
		{"list", "redisservices.redis.aeraki.io", "", "yes"},
		{"patch", "redisdestinations.redis.aeraki.io --subresource=status", "aeraki", "yes"},
	})
	v1, v2 := dubboProvider(t, "v1"), dubboProvider(t, "v2")
	port := testutil.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c.MustNamespace(t, "aeraki")
	c.MustKubectl(t, aerakiMesh(port, portOf(t, v1.Addr()), portOf(t, v2.Addr())), "apply", "-f", "-")
	c.MustKubectl(t, aerakiRouter("metaprotocol.aeraki.io/v1alpha1", "v1", "v2"), "apply", "-f", "-")
	ctrl := c.StartController(t, ctrlBin, "", "", "--leader-elect=false")
	startRealProxy(t, ctrl.XDSAddr, "proxy-aeraki", "aeraki")
	aeraki, rosetta := "metarouters.metaprotocol.aeraki.io", "metarouters.metaprotocol.rosetta.dev"

	// Calls of each method twice in a row: without a MetaRouter they
	// would alternate between the providers.
	routed := func(hello, rest string) func() bool {
		return func() bool {
			for _, m := range []string{"sayHello", "sayHello", "sayBye", "sayBye", "sayHello"} {
				want := rest
				if m == "sayHello" {
					want = hello
				}
				if callAs(addr, m) != want {
					return false
				}
			}
			return true
		}
	}
	testutil.Eventually(t, 15*time.Second, "calls routed by the Aeraki MetaRouter", routed("v1", "v2"))
	testutil.Eventually(t, 15*time.Second, "the Aeraki MetaRouter's status", func() bool {
		s, _, _ := acceptedOf(t, c, aeraki)
		return s == "True"
	})

	c.MustKubectl(t, aerakiRouter("metaprotocol.aeraki.io/v1alpha1", "v2", "v1"), "apply", "-f", "-")
	testutil.Eventually(t, 10*time.Second, "calls follow the Aeraki MetaRouter's edit", routed("v2", "v1"))

	// A Rosetta MetaRouter for the same host, created later: a conflict
	// the older Aeraki one wins.
	c.MustKubectl(t, aerakiRouter("metaprotocol.rosetta.dev/v1alpha1", "v1", "v1"), "apply", "-f", "-")
	var msg string
	testutil.Eventually(t, 15*time.Second, "the Rosetta MetaRouter reports the conflict", func() bool {
		s, r, m := acceptedOf(t, c, rosetta)
		msg = m
		return s == "False" && r == "HostConflict"
	})
	if !strings.Contains(msg, "aeraki/greeter@metaprotocol.aeraki.io") {
		t.Errorf("the conflict does not name the Aeraki MetaRouter: %q", msg)
	}
	if !routed("v2", "v1")() {
		t.Errorf("the newer Rosetta MetaRouter took the host: sayHello %s, sayBye %s", callAs(addr, "sayHello"), callAs(addr, "sayBye"))
	}

	c.MustKubectl(t, "", "delete", aeraki, "greeter", "-n", "aeraki")
	testutil.Eventually(t, 15*time.Second, "the Rosetta MetaRouter takes over", routed("v1", "v1"))
	testutil.Eventually(t, 15*time.Second, "the Rosetta MetaRouter accepted", func() bool {
		s, _, _ := acceptedOf(t, c, rosetta)
		return s == "True"
	})
}
