package istio

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
)

// TestGatewayBinding: a MetaRouter bound to an Istio Gateway routes the
// dubbo-go calls that arrive at the Gateway's server ports on the proxy
// its selector picks: a plaintext port, and an ISTIO_MUTUAL one where the
// caller's stand-in sidecar does Istio mTLS with the proxy's
// istiod-issued identity. The MetaRouter's routes are in force there (a
// method without a route is answered with Dubbo's no-route error), and,
// bound to the Gateway only, not on the mesh's listener of the service.
func TestGatewayBinding(t *testing.T) {
	c, m := needMesh(t)
	const ns = "edge"
	c.MustNamespace(t, ns)
	scopeToNamespace(t, c, ns)
	p := startProvider(t, c, ns, "greeter", "v1")
	ctrl := startController(t, c)
	gw := startWaypoint(t, c, m, ctrl.XDSAddr, waypointConfig{Namespace: ns, ListenIP: "127.0.0.33"})
	plain, secure := kubeenv.MustFreePort(t), kubeenv.MustFreePort(t)
	c.Apply(t, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: dubbo-gw, namespace: %[1]s}
spec:
  selector: {%[2]s: %[3]s}
  servers:
  - port: {number: %[4]d, name: tcp-dubbo, protocol: TCP}
    hosts: ["./*"]
  - port: {number: %[5]d, name: tls-dubbo, protocol: TLS}
    hosts: ["./*"]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: greeter-edge, namespace: %[1]s}
spec:
  hosts: [greeter]
  gateways: [dubbo-gw]
  routes:
  - name: hello-only
    match: {attributes: {method: {exact: sayHello}}}
    route: [{destination: {host: greeter}}]
`, ns, waypointLabel, waypointSA, plain, secure))
	plainListener := ns + "/dubbo-gw_" + fmt.Sprint(plain)
	gw.waitChains(t, ns+"/dubbo-gw_"+fmt.Sprint(secure), transportTLS)
	gw.waitConfig(t, "listener "+plainListener, func(d configDump) bool { _, ok := d.listener(plainListener); return ok })

	edgeCaller := plainCaller(t, gw.addr(plain))
	wantAnswer(t, "a plaintext caller at the gateway", edgeCaller, dubbokit.MethodSayHello, "x", "v1: hello x")
	wantRefused(t, "a method without a route at the gateway", edgeCaller, dubbokit.MethodEcho, "x", "")
	secureCaller := meshCaller(t, c, m, "demo", "visitor", gw.addr(secure), gw.ID)
	wantAnswer(t, "an mTLS caller at the gateway", secureCaller, dubbokit.MethodSayHello, "y", "v1: hello y")

	// Bound to the Gateway only, the MetaRouter leaves the mesh listener
	// of the service with its default route: echo is answered there.
	waitListening(t, gw.addr(p.Port))
	direct := plainCaller(t, gw.addr(p.Port))
	wantAnswer(t, "a caller of the mesh listener", direct, dubbokit.MethodEcho, "z", "v1: z")

	status := c.MustKubectl(t, "", "get", "metarouter", "greeter-edge", "-n", ns, "-o", "jsonpath={.status.conditions[*].status}")
	if strings.TrimSpace(status) != "True True" {
		t.Errorf("greeter-edge conditions' statuses %q, want Accepted and ResolvedRefs True", status)
	}
}
