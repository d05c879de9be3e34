package istio

import (
	"fmt"
	"slices"
	"testing"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// TestWaypointMTLS: a caller whose sidecar holds its istiod-issued
// certificate calls, over Istio mutual TLS, through Rosetta's waypoint to
// a provider whose sidecar holds the provider's; the provider's side sees
// the waypoint's identity. With a STRICT PeerAuthentication in the
// waypoint's namespace a plaintext caller is refused and the mTLS one
// still served; with PERMISSIVE the plaintext caller is served too.
func TestWaypointMTLS(t *testing.T) {
	c, m := needMesh(t)
	const ns, callerNS = "mtls", "shop"
	for _, n := range []string{ns, callerNS} {
		c.MustNamespace(t, n)
	}
	scopeToNamespace(t, c, ns)
	greeter := startSecuredProvider(t, c, m, securedProviderConfig{Namespace: ns, Service: "greeter", ServiceAccount: "greeter", Name: "v1"})
	ctrl := startController(t, c)
	wp := startWaypoint(t, c, m, ctrl.XDSAddr, waypointConfig{Namespace: ns})
	listener := listenerName(greeter.Host, greeter.Port)
	addr := wp.addr(greeter.Port)

	// Without a PeerAuthentication, Istio's default: PERMISSIVE.
	wp.waitChains(t, listener, transportTLS, transportRaw)
	testutil.WaitDialable(t, addr)
	frontend := meshCaller(t, c, m, callerNS, "frontend", addr, wp.ID)
	wantAnswer(t, "the mTLS caller", frontend, dubbokit.MethodSayHello, "frontend", "v1: hello frontend")
	if got, want := greeter.Terminator.callers(), []string{wp.ID}; !slices.Equal(got, want) {
		t.Fatalf("the provider's sidecar saw callers %v, want only the waypoint %v (failures: %v)", got, want, greeter.Terminator.failed())
	}

	t.Run("STRICT refuses a plaintext caller", func(t *testing.T) {
		setPeerAuthentication(t, c, ns, "STRICT")
		wp.waitChains(t, listener, transportTLS)
		served := greeter.Calls()
		refusals := handshakeErrors(t, wp, listener)
		wantRefused(t, "a plaintext caller", plainCaller(t, addr), dubbokit.MethodSayHello, "plain", "")
		if n := greeter.Calls(); n != served {
			t.Errorf("the provider got %d calls while a plaintext caller was refused, want none", n-served)
		}
		if n := handshakeErrors(t, wp, listener); n <= refusals {
			t.Errorf("the waypoint counted no failed TLS handshake on %s for the plaintext caller", listener)
		}
		wantAnswer(t, "the mTLS caller", frontend, dubbokit.MethodEcho, "still", "v1: still")
		again := meshCaller(t, c, m, callerNS, "frontend", addr, wp.ID)
		wantAnswer(t, "a new mTLS caller", again, dubbokit.MethodSayHello, "again", "v1: hello again")
	})

	t.Run("PERMISSIVE serves a plaintext caller", func(t *testing.T) {
		setPeerAuthentication(t, c, ns, "PERMISSIVE")
		wp.waitChains(t, listener, transportTLS, transportRaw)
		wantAnswer(t, "a plaintext caller", plainCaller(t, addr), dubbokit.MethodSayHello, "plain", "v1: hello plain")
		wantAnswer(t, "the mTLS caller", frontend, dubbokit.MethodSayHello, "frontend", "v1: hello frontend")
	})

	t.Run("a provider presenting another identity than its pod's is not called", func(t *testing.T) {
		// The Pod runs as billing; its sidecar holds greeter's certificate.
		billing := startSecuredProvider(t, c, m, securedProviderConfig{Namespace: ns, Service: "billing",
			ServiceAccount: "billing", Certificate: "greeter", Name: "billing"})
		listener := listenerName(billing.Host, billing.Port)
		wp.waitChains(t, listener, transportTLS, transportRaw)
		addr := wp.addr(billing.Port)
		testutil.WaitDialable(t, addr)
		// The waypoint answers with the reason: the identity it expected.
		wantRefused(t, "the mTLS caller", meshCaller(t, c, m, callerNS, "frontend", addr, wp.ID), dubbokit.MethodSayHello, "x",
			fmt.Sprintf("none of [%s]", spiffeID(ns, "billing")))
		if n := billing.Calls(); n != 0 {
			t.Errorf("the provider got %d calls, want none", n)
		}
		if got := billing.Terminator.callers(); len(got) != 0 {
			t.Errorf("the provider's sidecar accepted callers %v, want none", got)
		}
	})

	// Every call reached the provider over mTLS from the waypoint.
	if got, want := greeter.Terminator.callers(), []string{wp.ID}; !slices.Equal(got, want) {
		t.Errorf("the provider's sidecar saw callers %v, want only the waypoint %v", got, want)
	}
	if f := greeter.Terminator.failed(); len(f) > 0 {
		t.Errorf("the provider's sidecar saw failed handshakes or dials: %v", f)
	}
}

// handshakeErrors is the waypoint's count of failed downstream TLS
// handshakes on listener.
func handshakeErrors(t *testing.T, wp *waypoint, listener string) float64 {
	t.Helper()
	return metricValue(httpGet(t, "http://"+wp.Admin+"/metrics"),
		fmt.Sprintf(`rosetta_downstream_tls_handshake_errors_total{listener=%q}`, listener))
}
