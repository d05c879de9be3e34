package istio

import (
	"slices"
	"testing"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// TestXDSIdentity: the controller serves xDS over TLS with its own
// istiod-issued certificate and authenticates proxies by theirs
// (--xds-auth=mtls). A proxy holding namespace A's credentials that claims
// namespace B gets A's config and nothing of B's; B's own proxy gets B's.
// Each carries dubbo-go calls to its namespace's provider.
func TestXDSIdentity(t *testing.T) {
	c, m := needMesh(t)
	const a, b = "xds-a", "xds-b"
	providers := map[string]*provider{}
	for _, ns := range []string{a, b} {
		c.MustNamespace(t, ns)
		scopeToNamespace(t, c, ns)
		providers[ns] = startProvider(t, c, ns, "greeter", ns)
	}
	listenerA := listenerName("greeter."+a+".svc.cluster.local", providers[a].Port)
	listenerB := listenerName("greeter."+b+".svc.cluster.local", providers[b].Port)

	ctrl := startController(t, c, append(controllerIdentityArgs(t, c, m), "--xds-auth=mtls")...)
	ctrlID := spiffeID("rosetta-system", "rosetta-controller")
	// The impostor binds another loopback address, so that it could take
	// B's port if it were given B's listener.
	impostor := startWaypoint(t, c, m, ctrl.XDSAddr, waypointConfig{Namespace: b, Credentials: a, ListenIP: "127.0.0.2",
		XDSMTLS: true, ControllerID: ctrlID})
	proper := startWaypoint(t, c, m, ctrl.XDSAddr, waypointConfig{Namespace: b, XDSMTLS: true, ControllerID: ctrlID})

	// Each push carries a proxy's whole config: the first one with a
	// listener settles which namespace the proxy was served as.
	onlyListener := func(wp *waypoint, want, notWant string) {
		t.Helper()
		d := wp.waitConfig(t, "a listener", func(d configDump) bool { return len(d.Listeners) > 0 })
		if got := d.listenerNames(); !slices.Equal(got, []string{want}) {
			t.Errorf("the proxy holding %s's credentials has listeners %v, want only %s (never %s)", wp.ID, got, want, notWant)
		}
	}
	onlyListener(impostor, listenerA, listenerB)
	onlyListener(proper, listenerB, listenerA)
	// And still, after B's proxy connected and got B's config.
	onlyListener(impostor, listenerA, listenerB)

	for _, call := range []struct {
		who  string
		addr string
		want string
	}{
		{"through the proxy with A's credentials", impostor.addr(providers[a].Port), a + ": hello x"},
		{"through B's proxy", proper.addr(providers[b].Port), b + ": hello x"},
	} {
		testutil.WaitDialable(t, call.addr)
		wantAnswer(t, call.who, plainCaller(t, call.addr), dubbokit.MethodSayHello, "x", call.want)
	}
	ctrlMetrics := httpGet(t, "http://"+ctrl.HTTPAddr+"/metrics")
	if n := metricValue(ctrlMetrics, `rosetta_xds_claim_mismatches_total{field="namespace"}`); n < 1 {
		t.Errorf("the controller counted %v false namespace claims, want the impostor's", n)
	}
}
