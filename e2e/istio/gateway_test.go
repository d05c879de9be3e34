package istio

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
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
	plain, secure := testutil.FreePort(t), testutil.FreePort(t)
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
	testutil.WaitDialable(t, gw.addr(p.Port))
	direct := plainCaller(t, gw.addr(p.Port))
	wantAnswer(t, "a caller of the mesh listener", direct, dubbokit.MethodEcho, "z", "v1: z")

	status := c.MustKubectl(t, "", "get", "metarouter", "greeter-edge", "-n", ns, "-o", "jsonpath={.status.conditions[*].status}")
	if strings.TrimSpace(status) != "True True" {
		t.Errorf("greeter-edge conditions' statuses %q, want Accepted and ResolvedRefs True", status)
	}

	t.Run("the gateway's own TLS from its credentialName", func(t *testing.T) {
		gatewayOwnTLS(t, c, gw, ns)
	})
}

// gatewayOwnTLS adds SIMPLE and MUTUAL servers to dubbo-gw with the
// certificate of Secret edge-cert (which the controller may get, as the
// chart's gatewayCredentials value grants), and calls through them with
// dubbo-go behind a TLS originator trusting the gateway's CA.
func gatewayOwnTLS(t *testing.T, c *kubeenv.Cluster, gw *waypoint, ns string) {
	ca := identitytest.NewCA("edge-ca")
	key := identitytest.NewKey()
	const serverName = "dubbo.edge.example"
	c.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: edge-cert, namespace: %[1]s}
type: kubernetes.io/tls
data: {tls.crt: %[2]s, tls.key: %[3]s, ca.crt: %[4]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: rosetta-controller-gateway-credentials, namespace: %[1]s}
rules: [{apiGroups: [""], resources: [secrets], resourceNames: [edge-cert], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rosetta-controller-gateway-credentials, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rosetta-controller-gateway-credentials}
subjects: [{kind: ServiceAccount, name: rosetta-controller, namespace: rosetta-system}]
`, ns, b64(identitytest.CertPEM(ca.Serving(key.Public(), serverName))), b64(identitytest.KeyPEM(key)), b64(ca.PEM())))
	simple, mutual := testutil.FreePort(t), testutil.FreePort(t)
	c.MustKubectl(t, "", "patch", "gateway.networking.istio.io", "dubbo-gw", "-n", ns, "--type=json", "-p", fmt.Sprintf(`[
{"op": "add", "path": "/spec/servers/-", "value": {"port": {"number": %d, "name": "tls-simple", "protocol": "TLS"}, "hosts": ["./*"], "tls": {"mode": "SIMPLE", "credentialName": "edge-cert"}}},
{"op": "add", "path": "/spec/servers/-", "value": {"port": {"number": %d, "name": "tls-mutual", "protocol": "TLS"}, "hosts": ["./*"], "tls": {"mode": "MUTUAL", "credentialName": "edge-cert"}}}]`, simple, mutual))
	for _, port := range []int{simple, mutual} {
		l := ns + "/dubbo-gw_" + fmt.Sprint(port)
		gw.waitConfig(t, "listener "+l, func(d configDump) bool { _, ok := d.listener(l); return ok })
		testutil.WaitDialable(t, gw.addr(port))
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM())
	clientPEM, clientKey := ca.Leaf("", time.Hour)
	clientCert, err := tls.X509KeyPair(clientPEM, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	originate := func(port int, certs ...tls.Certificate) *dubbokit.Consumer {
		cfg := &tls.Config{RootCAs: roots, ServerName: serverName, Certificates: certs}
		r := startRelay(t, fmt.Sprintf("TLS originator to %d", port), nil, func() (net.Conn, error) { return tls.Dial("tcp", gw.addr(port), cfg) })
		return dubbokit.NewConsumer(t, r.Addr, dubbokit.ConsumerConfig{Version: dubboVersion, Timeout: callTimeout})
	}
	wantAnswer(t, "a TLS caller at the SIMPLE port", originate(simple), dubbokit.MethodSayHello, "s", "v1: hello s")
	wantAnswer(t, "a TLS caller with a client certificate at the MUTUAL port", originate(mutual, clientCert), dubbokit.MethodSayHello, "m", "v1: hello m")

	// MUTUAL refuses a caller without a certificate: the handshake fails
	// at the caller's first read.
	conn, err := tls.Dial("tcp", gw.addr(mutual), &tls.Config{RootCAs: roots, ServerName: serverName})
	if err == nil {
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(callTimeout))
		_, err = conn.Read(make([]byte, 1))
	}
	if err == nil {
		t.Fatal("the MUTUAL port served a caller without a certificate")
	}
	if dump, _ := gw.configDump(); strings.Contains(dump.raw, b64(identitytest.KeyPEM(key))) || strings.Contains(dump.raw, "PRIVATE KEY") {
		t.Error("the proxy's /config_dump shows the gateway's private key")
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
