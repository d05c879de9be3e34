package controller_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/authz"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
)

// TestAuthorizationApplies states where policies apply: which listener
// (service) of which proxy carries which policy, for the authorization
// golden file.
func TestAuthorizationApplies(t *testing.T) {
	ix, proxies := controllertest.BuildFile(t, "testdata/golden/authorization.yaml", goldenOptions)
	byID := map[string]*controller.Proxy{}
	for _, p := range proxies {
		byID[p.ID] = p
	}
	cases := []struct {
		proxy, listener string
		has, hasNot     []string
	}{
		// targetRefs Service: greeter only.
		{"waypoint", "greeter.demo.svc.cluster.local_20880", []string{"demo/greeter-allow"}, nil},
		{"waypoint", "orders.demo.svc.cluster.local_8000", nil, []string{"demo/greeter-allow"}},
		// targetRefs Gateway: every listener of the waypoint, none of the other proxy.
		{"waypoint", "cart.shop.svc.cluster.local_9090", []string{"demo/gateway-mtls-only"}, nil},
		{"plain", "greeter.demo.svc.cluster.local_20880", nil, []string{"demo/gateway-mtls-only"}},
		// selector: the plain proxy only.
		{"plain", "cart.shop.svc.cluster.local_9090", []string{"demo/plain-allow-all"}, nil},
		{"waypoint", "greeter.demo.svc.cluster.local_20880", nil, []string{"demo/plain-allow-all"}},
		// namespace-wide: the namespace's services; mesh-wide: all.
		{"waypoint", "orders.demo.svc.cluster.local_8000", []string{"demo/deny-dev", "istio-system/mesh-audit"}, []string{"shop/shop-callers"}},
		{"waypoint", "cart.shop.svc.cluster.local_9090", []string{"shop/shop-callers", "istio-system/mesh-audit"}, []string{"demo/deny-dev"}},
		// MetaAuthorizationPolicy hosts; the invalid one is nowhere;
		// hosts of other namespaces are not covered.
		{"plain", "orders.demo.svc.cluster.local_8000", []string{"demo/orders-callee", "demo/ext-authz"}, []string{"demo/bad-cidr", "demo/unknown-hosts"}},
		{"plain", "greeter.demo.svc.cluster.local_20880", []string{"demo/unknown-hosts"}, []string{"demo/orders-callee"}},
		{"plain", "cart.shop.svc.cluster.local_9090", nil, []string{"demo/unknown-hosts"}},
		// DubboAuthorizationPolicy: dubbo ports of its namespace; in the
		// root namespace, of every namespace.
		{"waypoint", "greeter.demo.svc.cluster.local_20880", []string{"demo/dubbo-callers@dubbo.aeraki.io", "istio-system/no-test-callers"}, nil},
		{"waypoint", "orders.demo.svc.cluster.local_8000", nil, []string{"demo/dubbo-callers@dubbo.aeraki.io", "istio-system/no-test-callers"}},
	}
	for _, c := range cases {
		t.Run(c.proxy+"/"+c.listener, func(t *testing.T) {
			names := map[string]bool{}
			for _, p := range listenerFilter(t, ix.Generate(byID[c.proxy]), c.listener).GetAuthorization() {
				names[p.GetName()] = true
			}
			for _, n := range c.has {
				if !names[n] {
					t.Errorf("%s missing (has %v)", n, names)
				}
			}
			for _, n := range c.hasNot {
				if names[n] {
					t.Errorf("%s applies, it should not", n)
				}
			}
		})
	}
}

// TestAuthorizationSimulation follows requests through the authorization
// of the golden file's listeners, with the proxy's own engine: who calls
// what, and whether it passes.
func TestAuthorizationSimulation(t *testing.T) {
	ix, proxies := controllertest.BuildFile(t, "testdata/golden/authorization.yaml", goldenOptions)
	byID := map[string]*controller.Proxy{}
	for _, p := range proxies {
		byID[p.ID] = p
	}
	frontend := "spiffe://cluster.local/ns/web/sa/frontend"
	cases := []struct {
		proxy, listener string
		principal, peer string
		attrs           map[string]string
		allowed         bool
		policy          string
	}{
		{"waypoint", "greeter.demo.svc.cluster.local_20880", frontend, "10.2.0.1", map[string]string{"method": "sayHello", "interface": "org.example.Greeter"}, true, "demo/greeter-allow"},
		{"waypoint", "greeter.demo.svc.cluster.local_20880", frontend, "10.2.0.1", map[string]string{"method": "sayBye", "interface": "org.example.Greeter"}, true, "demo/dubbo-callers@dubbo.aeraki.io"},
		{"waypoint", "greeter.demo.svc.cluster.local_20880", frontend, "10.2.0.1", map[string]string{"method": "shutdown", "interface": "org.example.Greeter"}, false, ""},
		{"waypoint", "greeter.demo.svc.cluster.local_20880", "spiffe://cluster.local/ns/web/sa/other", "10.2.0.1", map[string]string{"method": "sayHello"}, false, ""},
		{"waypoint", "greeter.demo.svc.cluster.local_20880", "", "10.2.0.1", map[string]string{"method": "sayHello"}, false, "demo/gateway-mtls-only"},
		{"waypoint", "greeter.demo.svc.cluster.local_20880", "spiffe://cluster.local/ns/dev/sa/x", "10.2.0.1", map[string]string{"method": "dropAll"}, false, "demo/deny-dev"},
		{"waypoint", "greeter.demo.svc.cluster.local_20880", "spiffe://cluster.local/ns/test-1/sa/x", "10.2.0.1", map[string]string{"method": "sayHello"}, false, "istio-system/no-test-callers"},
		{"waypoint", "orders.demo.svc.cluster.local_8000", frontend, "10.2.0.1", nil, false, "demo/ext-authz"},
		{"plain", "cart.shop.svc.cluster.local_9090", "", "10.2.0.1", nil, true, "demo/plain-allow-all"},
		// shop-callers: namespace shop or web, and service account
		// web/frontend of any trust domain, on port 9090.
		{"waypoint", "cart.shop.svc.cluster.local_9090", frontend, "10.2.0.1", nil, true, "shop/shop-callers"},
		{"waypoint", "cart.shop.svc.cluster.local_9090", "spiffe://other.org/ns/web/sa/frontend", "10.2.0.1", nil, true, "shop/shop-callers"},
		{"waypoint", "cart.shop.svc.cluster.local_9090", "spiffe://cluster.local/ns/shop/sa/x", "10.2.0.1", nil, false, ""},
		{"waypoint", "cart.shop.svc.cluster.local_9090", "", "10.2.0.1", nil, false, "demo/gateway-mtls-only"},
		// orders-callee: outsiders from 192.0.2.0/24 may not delete.
		{"plain", "orders.demo.svc.cluster.local_8000", "", "192.0.2.7", map[string]string{"func": "/trpc.shop.Orders/Get"}, false, "demo/ext-authz"},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d/%s/%s", i, c.proxy, c.listener), func(t *testing.T) {
			mpp := listenerFilter(t, ix.Generate(byID[c.proxy]), c.listener)
			e, err := authz.Compile(mpp.GetAuthorization())
			if err != nil {
				t.Fatal(err)
			}
			req := &authz.Request{Principal: c.principal, Namespace: authz.NamespaceOf(c.principal),
				Peer: netip.MustParseAddr(c.peer), Port: listenerPort(c.listener),
				Attr: func(n string) (string, bool) { v, ok := c.attrs[n]; return v, ok }}
			d := e.Check(req)
			if d.Allowed != c.allowed || (c.policy != "" && d.Policy != c.policy) {
				t.Fatalf("decision %+v, want allowed=%v by %q", d, c.allowed, c.policy)
			}
		})
	}
}

// listenerFilter is the MetaProtocolProxy of the listener named name.
func listenerFilter(t *testing.T, res *config.Resources, name string) *configv1alpha1.MetaProtocolProxy {
	t.Helper()
	for _, l := range res.Listeners {
		if l.GetName() == name {
			return controllertest.ListenerFilter(t, l.GetFilterChains()[0])
		}
	}
	t.Fatalf("no listener %s", name)
	return nil
}

func listenerPort(name string) uint32 {
	var p uint32
	if i := strings.LastIndex(name, "_"); i >= 0 {
		_, _ = fmt.Sscan(name[i+1:], &p)
	}
	return p
}
