package istio

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// greeterPolicies are the policies of TestWaypointAuthorization, all
// attached to Service greeter of ns: Istio's DENY of one principal and
// ALLOW of the callers' namespace, and Rosetta's MetaAuthorizationPolicy
// denying one method of the Dubbo interface.
func greeterPolicies(ns, allowedNS, deniedPrincipal, deniedMethod string) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-intruder, namespace: %[1]s}
spec:
  targetRefs: [{group: "", kind: Service, name: greeter}]
  action: DENY
  rules: [{from: [{source: {principals: [%[3]q]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-shop, namespace: %[1]s}
spec:
  targetRefs: [{group: "", kind: Service, name: greeter}]
  action: ALLOW
  rules: [{from: [{source: {namespaces: [%[2]s]}}]}]
---
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaAuthorizationPolicy
metadata: {name: deny-echo, namespace: %[1]s}
spec:
  targetRefs: [{kind: Service, name: greeter}]
  action: DENY
  rules:
  - to: [{operation: {attributes: {interface: {values: [%[5]s]}, method: {values: [%[4]s]}}}}]
`, ns, allowedNS, deniedPrincipal, deniedMethod, dubbokit.Greeter)
}

// TestWaypointAuthorization: Istio AuthorizationPolicies and a
// MetaAuthorizationPolicy attached to the greeter Service, enforced by
// the waypoint on its callers' mTLS identities and on Dubbo methods. A
// DENY by principal wins over the ALLOW of its namespace; a caller of
// another namespace matches no ALLOW; one method of the interface is
// denied while another succeeds on the same connection. Denied calls get
// a Dubbo error through dubbo-go naming the policy, and never reach the
// provider.
func TestWaypointAuthorization(t *testing.T) {
	c, m := needMesh(t)
	const ns, shop, other = "authz", "shop", "other"
	for _, n := range []string{ns, shop, other} {
		c.MustNamespace(t, n)
	}
	scopeToNamespace(t, c, ns)
	greeter := startSecuredProvider(t, c, m, securedProviderConfig{Namespace: ns, Service: "greeter", ServiceAccount: "greeter", Name: "v1"})
	ctrl := startController(t, c)
	wp := startWaypoint(t, c, m, ctrl.XDSAddr, waypointConfig{Namespace: ns})
	listener := listenerName(greeter.Host, greeter.Port)
	addr := wp.addr(greeter.Port)

	// Istio's principals are SPIFFE IDs without the scheme.
	intruder := strings.TrimPrefix(spiffeID(shop, "intruder"), "spiffe://")
	c.Apply(t, greeterPolicies(ns, shop, intruder, dubbokit.MethodEcho))
	want := []string{"ALLOW " + ns + "/allow-shop", "DENY " + ns + "/deny-echo", "DENY " + ns + "/deny-intruder"}
	wp.waitConfig(t, fmt.Sprintf("policies %v on %s", want, listener), func(d configDump) bool {
		l, ok := d.listener(listener)
		return ok && slices.Equal(l.policies(), want)
	})
	testutil.WaitDialable(t, addr)

	frontend := meshCaller(t, c, m, shop, "frontend", addr, wp.ID)
	wantAnswer(t, "shop/frontend", frontend, dubbokit.MethodSayHello, "frontend", "v1: hello frontend")
	wantRefused(t, "shop/frontend", frontend, dubbokit.MethodEcho, "x", fmt.Sprintf("rosetta: denied by policy %q", ns+"/deny-echo"))
	wantAnswer(t, "shop/frontend after a denied call", frontend, dubbokit.MethodSayHello, "again", "v1: hello again")

	wantRefused(t, "shop/intruder", meshCaller(t, c, m, shop, "intruder", addr, wp.ID),
		dubbokit.MethodSayHello, "x", fmt.Sprintf("rosetta: denied by policy %q", ns+"/deny-intruder"))
	wantRefused(t, "other/visitor", meshCaller(t, c, m, other, "visitor", addr, wp.ID),
		dubbokit.MethodSayHello, "x", "rosetta: no ALLOW policy matched")
	// PERMISSIVE (no PeerAuthentication) lets a plaintext caller in, but
	// it has no namespace for the ALLOW policy to match.
	wantRefused(t, "a plaintext caller", plainCaller(t, addr), dubbokit.MethodSayHello, "x", "rosetta: no ALLOW policy matched")

	if n := greeter.Calls(); n != 2 {
		t.Errorf("the provider got %d calls, want the 2 allowed ones", n)
	}
	if got, want := greeter.Terminator.callers(), []string{wp.ID}; !slices.Equal(got, want) {
		t.Errorf("the provider's sidecar saw callers %v, want only the waypoint %v", got, want)
	}
	waitAccepted(t, c, "metaauthorizationpolicy", ns, "deny-echo")
}

// waitAccepted waits until the controller has written status
// Accepted=True and ResolvedRefs=True on a Rosetta policy.
func waitAccepted(t *testing.T, c *kubeenv.Cluster, kind, ns, name string) {
	t.Helper()
	var last string
	err := testutil.Poll(configWait, fmt.Sprintf("%s %s/%s accepted", kind, ns, name), func() (bool, error) {
		out, err := c.Kubectl("", "get", kind, name, "-n", ns, "-o", "jsonpath={.status.conditions}")
		if err != nil {
			return false, fmt.Errorf("%w: %s", err, out)
		}
		last = out
		var conds []struct{ Type, Status string }
		if out != "" {
			if err := json.Unmarshal([]byte(out), &conds); err != nil {
				return false, err
			}
		}
		ok := map[string]bool{}
		for _, cd := range conds {
			ok[cd.Type] = cd.Status == "True"
		}
		return ok["Accepted"] && ok["ResolvedRefs"], nil
	})
	if err != nil {
		t.Errorf("%v; conditions: %s", err, last)
	}
}
