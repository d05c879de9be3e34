package controller

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// gatewayDocs are a Gateway edge/dubbo-gw with two server ports, services
// a and b of shop, and MetaRouters bound to the Gateway.
const gatewayDocs = `---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: dubbo-gw, namespace: edge}
spec:
  selector: {app: edge-proxy}
  servers:
  - port: {number: 9080, name: tcp-a, protocol: TCP}
    hosts: ["shop/a.shop.svc.cluster.local"]
  - port: {number: 9443, name: tls-any, protocol: TLS}
    hosts: ["*/*"]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: a-edge, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  hosts: [a]
  gateways: [edge/dubbo-gw]
  routes:
  - name: to-a
    route: [{destination: {host: a}}]
---
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: b-edge, namespace: shop, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  hosts: [b]
  gateways: [edge/dubbo-gw, mesh, edge/missing]
  routes:
  - name: to-b
    route: [{destination: {host: b}}]
`

// TestGatewayBinding: a Gateway's proxies get a listener per server port
// with the routes of the oldest MetaRouter bound to it whose host the
// server allows; the mesh's proxies keep only mesh-bound routes; a younger
// MetaRouter that loses a port and a missing Gateway show in status.
func TestGatewayBinding(t *testing.T) {
	in := &Inputs{}
	if err := in.AddYAML([]byte(gatewayDocs + dubboService("a", 20880, 1, "") + dubboService("b", 20881, 1, ""))); err != nil {
		t.Fatal(err)
	}
	ix := (&Builder{}).Build(in)
	edge := &Proxy{ID: "edge", Namespace: "edge", Labels: map[string]string{"app": "edge-proxy"}, Mode: ModeGateway,
		Identity: "spiffe://cluster.local/ns/edge/sa/edge-proxy"}
	res := ix.Generate(edge)
	got := map[string]string{}
	for _, l := range res.Listeners {
		if !strings.HasPrefix(l.Name, "edge/") {
			continue
		}
		var chains []string
		for _, fc := range l.FilterChains {
			chains = append(chains, fc.GetFilterChainMatch().GetTransportProtocol())
		}
		got[l.Name] = fmt.Sprintf("%d %v", l.GetAddress().GetSocketAddress().GetPortValue(), chains)
	}
	want := map[string]string{"edge/dubbo-gw_9080": "9080 []", "edge/dubbo-gw_9443": "9443 [tls]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("gateway listeners %v, want %v", got, want)
	}
	for _, rc := range res.Routes {
		if strings.HasPrefix(rc.Name, "edge/") && (len(rc.Routes) != 1 || rc.Routes[0].Name != "to-a") {
			t.Errorf("%s routes %v; want a-edge's (the oldest, allowed on both ports)", rc.Name, rc.Routes)
		}
	}

	mesh := ix.Generate(&Proxy{ID: "m", Namespace: "shop"})
	routesOf := map[string]string{}
	for _, rc := range mesh.Routes {
		routesOf[rc.Name] = rc.Routes[0].Name
	}
	if routesOf["a.shop.svc.cluster.local_20880"] != "default" || routesOf["b.shop.svc.cluster.local_20881"] != "to-b" {
		t.Errorf("mesh routes %v: a-edge is gateway-only, b-edge binds mesh too", routesOf)
	}

	st := ix.Statuses["shop/b-edge"]
	accepted, refs := st.Conditions[0], st.Conditions[1]
	if accepted.Status != "True" || accepted.Reason != v1alpha1.ReasonConflict || !strings.Contains(accepted.Message, "port 9443 of Gateway edge/dubbo-gw serves the older MetaRouter shop/a-edge") {
		t.Errorf("b-edge Accepted: %+v", accepted)
	}
	if refs.Status != "False" || refs.Reason != ReasonUnknownGateway || !strings.Contains(refs.Message, "spec.gateways[2]: no Gateway edge/missing") {
		t.Errorf("b-edge ResolvedRefs: %+v", refs)
	}
	if c := ix.Statuses["shop/a-edge"].Conditions[0]; c.Status != "True" || c.Reason != v1alpha1.ReasonAccepted {
		t.Errorf("a-edge Accepted: %+v", c)
	}
}

// TestGatewayOwnTLS: SIMPLE and MUTUAL servers take their certificate (and
// the clients' CA) from the credentialName Secret, sent as SDS secrets
// named as Istio names them; a server whose Secret is missing is not
// served, with a warning.
func TestGatewayOwnTLS(t *testing.T) {
	docs := `---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tls-gw, namespace: edge}
spec:
  selector: {app: edge-proxy}
  servers:
  - port: {number: 9443, name: tls-simple, protocol: TLS}
    hosts: ["*/*"]
    tls: {mode: SIMPLE, credentialName: edge-cert}
  - port: {number: 9444, name: tls-mutual, protocol: TLS}
    hosts: ["*/*"]
    tls: {mode: MUTUAL, credentialName: edge-cert}
  - port: {number: 9445, name: tls-missing, protocol: TLS}
    hosts: ["*/*"]
    tls: {mode: SIMPLE, credentialName: nowhere}
---
apiVersion: v1
kind: Secret
metadata: {name: edge-cert, namespace: edge}
type: kubernetes.io/tls
data: {tls.crt: Y2VydA==, tls.key: a2V5, ca.crt: Y2E=}
---
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: a-edge, namespace: shop}
spec:
  hosts: [a]
  gateways: [edge/tls-gw]
  routes: [{route: [{destination: {host: a}}]}]
`
	in := &Inputs{}
	if err := in.AddYAML([]byte(docs + dubboService("a", 20880, 1, ""))); err != nil {
		t.Fatal(err)
	}
	ix := (&Builder{}).Build(in)
	res := ix.Generate(&Proxy{ID: "edge", Namespace: "edge", Labels: map[string]string{"app": "edge-proxy"}})
	ports := listenerPorts(res)
	if _, ok := ports["edge/tls-gw_9445"]; ok || len(ports) != 3 {
		t.Fatalf("listeners %v: want 9443, 9444 and the mesh's, not 9445", ports)
	}
	var secrets []string
	for _, s := range res.Secrets {
		secrets = append(secrets, s.GetName())
	}
	if want := "[kubernetes://edge/edge-cert kubernetes://edge/edge-cert-cacert]"; fmt.Sprint(secrets) != want {
		t.Errorf("secrets %v, want %s", secrets, want)
	}
	if s := res.Secrets[0].GetTlsCertificate(); string(s.GetCertificateChain().GetInlineBytes()) != "cert" || string(s.GetPrivateKey().GetInlineBytes()) != "key" {
		t.Errorf("certificate secret %v", s)
	}
	if w := strings.Join(ix.Warnings(), "\n"); !strings.Contains(w, "Gateway edge/tls-gw: server port 9445 is not served: tls.credentialName: no Secret edge/nowhere") {
		t.Errorf("warnings %q", w)
	}
}
