package controller

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// TestRateLimitServiceOverMTLS: a proxy with an identity reaches a rate
// limit service in the mesh over Istio mTLS, as it reaches other
// services: a DestinationRule's ISTIO_MUTUAL (its sni and names) or a
// STRICT PeerAuthentication of the service's namespace (or mesh-wide);
// PERMISSIVE, none, or a DestinationRule's DISABLE keep it plaintext, and
// a proxy without an identity always is.
func TestRateLimitServiceOverMTLS(t *testing.T) {
	const (
		rls      = "outbound|8081||rate-limit-server.meta-dubbo.svc.cluster.local"
		identity = "spiffe://cluster.local/ns/meta-dubbo/sa/waypoint"
	)
	strict := func(ns string) string {
		return "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: " + ns + "}\nspec: {mtls: {mode: STRICT}}\n---\n"
	}
	rule := func(spec string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: rls, namespace: meta-dubbo}\nspec: {host: rate-limit-server.meta-dubbo.svc.cluster.local, trafficPolicy: {tls: " + spec + "}}\n---\n"
	}
	cases := []struct {
		name, docs, identity string
		sni                  string // "" for plaintext
		sans                 []string
	}{
		{"no policy", "", identity, "", nil},
		{"STRICT in the service's namespace", strict("meta-dubbo"), identity, "outbound_.8081_._.rate-limit-server.meta-dubbo.svc.cluster.local", nil},
		{"STRICT mesh-wide", strict("istio-system"), identity, "outbound_.8081_._.rate-limit-server.meta-dubbo.svc.cluster.local", nil},
		{"STRICT elsewhere", strict("other"), identity, "", nil},
		{"STRICT but no identity", strict("meta-dubbo"), "", "", nil},
		{"ISTIO_MUTUAL", rule("{mode: ISTIO_MUTUAL, sni: rls.example, subjectAltNames: [spiffe://cluster.local/ns/meta-dubbo/sa/ratelimit]}"), identity, "rls.example", []string{"spiffe://cluster.local/ns/meta-dubbo/sa/ratelimit"}},
		{"DISABLE over STRICT", strict("meta-dubbo") + rule("{mode: DISABLE}"), identity, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := &Inputs{}
			if err := in.AddYAML(mustRead(t, "testdata/golden/ratelimit.yaml")); err != nil {
				t.Fatal(err)
			}
			if err := in.AddYAML([]byte(c.docs)); err != nil {
				t.Fatal(err)
			}
			ix := (&Builder{Options: Options{Resolve: fakeResolver}}).Build(in)
			res := ix.Generate(&Proxy{ID: "waypoint", Namespace: "meta-dubbo", Identity: c.identity})
			var found bool
			for _, cl := range res.Clusters {
				if cl.GetName() != rls {
					continue
				}
				found = true
				if len(cl.GetTransportSocketMatches()) > 0 {
					t.Fatalf("transport socket matches %v: the endpoint is a host name without tlsMode", cl.GetTransportSocketMatches())
				}
				ctx, err := config.UpstreamTLS(cl.GetTransportSocket())
				if err != nil {
					t.Fatal(err)
				}
				if got := ctx.GetSni(); got != c.sni {
					t.Fatalf("sni %q (transport %v), want %q", got, cl.GetTransportSocket(), c.sni)
				}
				sans, _ := config.URISANs(ctx.GetCommonTlsContext())
				if len(sans) != len(c.sans) || (len(sans) > 0 && sans[0] != c.sans[0]) {
					t.Fatalf("sans %v, want %v", sans, c.sans)
				}
			}
			if !found {
				t.Fatalf("no cluster %s", rls)
			}
		})
	}
}
