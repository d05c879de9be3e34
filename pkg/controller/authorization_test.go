package controller

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"sigs.k8s.io/yaml"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/authz"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	dubbov1 "github.com/rosetta-mesh/rosetta/protocols/dubbo/api/v1alpha1"
)

// istioAP reads an AuthorizationPolicy spec (YAML) of namespace demo,
// named p.
func istioAP(t *testing.T, spec string) *securityv1.AuthorizationPolicy {
	t.Helper()
	doc := "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: demo}\nspec:\n" + indent(spec)
	var ap securityv1.AuthorizationPolicy
	if err := yaml.UnmarshalStrict([]byte(doc), &ap); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return &ap
}

func indent(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// compact renders a policy's rules as protobuf JSON (the proxy's form),
// "[]" for none.
func compact(t *testing.T, p *configv1alpha1.AuthorizationPolicy) string {
	t.Helper()
	js, err := protojson.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Action string            `json:"action"`
		Rules  []json.RawMessage `json:"rules"`
	}
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v.Rules)
	if err != nil {
		t.Fatal(err)
	}
	if v.Action == "" {
		v.Action = "ALLOW"
	}
	if string(out) == "null" {
		out = []byte("[]")
	}
	return v.Action + " " + string(out)
}

// TestTranslateIstio: each Istio policy becomes the proxy's form; what the
// proxy cannot enforce drops the rule of an ALLOW policy and is ignored in
// a DENY policy, and every result compiles.
func TestTranslateIstio(t *testing.T) {
	cases := []struct {
		name, spec, want string
		notes            int
	}{
		{"allow nothing", `{}`, `ALLOW []`, 0},
		{"allow all", `rules: [{}]`, `ALLOW [{}]`, 0},
		{"deny without rules matches nothing", `action: DENY`, `DENY []`, 0},
		{"sources and operations", `
rules:
- from:
  - source: {principals: [cluster.local/ns/a/sa/b], notNamespaces: [dev], ipBlocks: [10.0.0.0/8], notIpBlocks: [10.1.0.0/16]}
  - source: {namespaces: [prod]}
  to:
  - operation: {ports: ["20880"], notPorts: ["20881"], methods: [sayHello, "get*"], notMethods: [getSecret]}`,
			`ALLOW [{"from":[{"principals":["cluster.local/ns/a/sa/b"],"notNamespaces":["dev"],"ipBlocks":["10.0.0.0/8"],"notIpBlocks":["10.1.0.0/16"]},{"namespaces":["prod"]}],"to":[{"ports":[20880],"notPorts":[20881],"attributes":[{"name":"method","values":["sayHello","get*"],"notValues":["getSecret"]}]}]}]`, 0},
		{"remote ip blocks are peer blocks", `
action: DENY
rules:
- from:
  - source: {remoteIpBlocks: [192.0.2.1], notRemoteIpBlocks: [192.0.2.0/30], notIpBlocks: [198.51.100.0/24]}`,
			`DENY [{"from":[{"ipBlocks":["192.0.2.1"],"notIpBlocks":["198.51.100.0/24","192.0.2.0/30"]}]}]`, 0},
		{"service accounts and trust domains are principals", `
rules:
- from:
  - source: {serviceAccounts: [web/frontend], notServiceAccounts: [web/admin], notTrustDomains: [other.org]}
  - source: {trustDomains: [cluster.local]}`,
			`ALLOW [{"from":[{"principals":["*/ns/web/sa/frontend"],"notPrincipals":["*/ns/web/sa/admin","other.org/*"]},{"principals":["cluster.local/*"]}]}]`, 0},
		{"allow: a path drops the rule, the next rule stays", `
rules:
- to:
  - operation: {methods: [a], paths: [/x]}
- to:
  - operation: {methods: [b]}`,
			`ALLOW [{"to":[{"attributes":[{"name":"method","values":["b"]}]}]}]`, 1},
		{"deny: a path is ignored", `
action: DENY
rules:
- to:
  - operation: {methods: [a], paths: [/x]}`,
			`DENY [{"to":[{"attributes":[{"name":"method","values":["a"]}]}]}]`, 1},
		{"deny: an operation with only hosts matches every request", `
action: DENY
rules:
- from:
  - source: {namespaces: [dev]}
  to:
  - operation: {hosts: [a.example.com]}
  - operation: {methods: [x]}`,
			`DENY [{"from":[{"namespaces":["dev"]}]}]`, 1},
		{"allow: JWT principals drop the rule (all rules gone: allow nothing)", `
rules:
- from:
  - source: {requestPrincipals: ["*"]}`,
			`ALLOW []`, 1},
		{"deny: JWT principals ignored leave a rule that matches every request", `
action: DENY
rules:
- from:
  - source: {requestPrincipals: ["issuer/sub"]}`,
			`DENY [{}]`, 1},
		{"audit is lenient like deny", `
action: AUDIT
rules:
- to:
  - operation: {paths: [/x], ports: ["9090"]}`,
			`AUDIT [{"to":[{"ports":[9090]}]}]`, 1},
		{"allow: an invalid port drops the rule", `
rules:
- to:
  - operation: {ports: ["http"]}`,
			`ALLOW []`, 1},
		{"deny: an invalid CIDR is ignored", `
action: DENY
rules:
- from:
  - source: {ipBlocks: [10.0.0.0/33], namespaces: [dev]}`,
			`DENY [{"from":[{"namespaces":["dev"]}]}]`, 1},
		{"allow: principals and service accounts cannot be ANDed", `
rules:
- from:
  - source: {principals: ["*"], serviceAccounts: [a/b]}`,
			`ALLOW []`, 1},
		{"deny: the second of two ANDed fields is ignored", `
action: DENY
rules:
- from:
  - source: {ipBlocks: [10.0.0.0/8], remoteIpBlocks: [10.1.0.0/16]}`,
			`DENY [{"from":[{"ipBlocks":["10.0.0.0/8"]}]}]`, 1},
		{"allow: an empty source is invalid", `
rules:
- from:
  - source: {}`,
			`ALLOW []`, 1},
		{"when: conditions go into every source and operation", `
rules:
- from:
  - source: {principals: [a]}
  - source: {namespaces: [b]}
  to:
  - operation: {methods: [m]}
  when:
  - {key: source.namespace, notValues: [dev]}
  - {key: source.ip, values: [10.0.0.0/8]}
  - {key: destination.port, values: ["20880"], notValues: ["20881"]}`,
			`ALLOW [{"from":[{"principals":["a"],"notNamespaces":["dev"],"ipBlocks":["10.0.0.0/8"]},{"namespaces":["b"],"notNamespaces":["dev"],"ipBlocks":["10.0.0.0/8"]}],"to":[{"ports":[20880],"notPorts":[20881],"attributes":[{"name":"method","values":["m"]}]}]}]`, 0},
		{"when: without sources the rule gets one", `
rules:
- when:
  - {key: source.principal, values: [cluster.local/ns/a/sa/b]}
  - {key: remote.ip, notValues: [192.0.2.0/24]}`,
			`ALLOW [{"from":[{"principals":["cluster.local/ns/a/sa/b"],"notIpBlocks":["192.0.2.0/24"]}]}]`, 0},
		{"allow: a when on a field a source sets cannot be ANDed", `
rules:
- from:
  - source: {namespaces: [a]}
  when:
  - {key: source.namespace, values: [b]}`,
			`ALLOW []`, 1},
		{"allow: an unknown when key drops the rule", `
rules:
- when:
  - {key: "request.auth.claims[iss]", values: [x]}`,
			`ALLOW []`, 1},
		{"deny: an unknown when key is ignored", `
action: DENY
rules:
- from:
  - source: {notPrincipals: ["*"]}
  when:
  - {key: "request.headers[x]", values: [x]}`,
			`DENY [{"from":[{"notPrincipals":["*"]}]}]`, 1},
		{"custom is a deny of everything", `
action: CUSTOM
provider: {name: opa}
rules:
- to:
  - operation: {paths: [/admin]}`,
			`DENY [{}]`, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, notes := translateIstio(istioAP(t, c.spec))
			if got := compact(t, out); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
			if len(notes) != c.notes {
				t.Errorf("notes %q, want %d", notes, c.notes)
			}
			if out.GetName() != "demo/p" {
				t.Errorf("name %q", out.GetName())
			}
			if _, err := authz.Compile([]*configv1alpha1.AuthorizationPolicy{out}); err != nil {
				t.Errorf("does not compile: %v", err)
			}
		})
	}
}

// listenerProxy returns the MetaProtocolProxy filter of a listener.
func listenerProxy(t *testing.T, res *config.Resources, name string) *configv1alpha1.MetaProtocolProxy {
	t.Helper()
	for _, l := range res.Listeners {
		if l.GetName() != name {
			continue
		}
		var mpp configv1alpha1.MetaProtocolProxy
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&mpp); err != nil {
			t.Fatal(err)
		}
		return &mpp
	}
	t.Fatalf("no listener %s", name)
	return nil
}

// TestAuthorizationInvalidUpdateKeepsLastValid: an update the controller
// refuses leaves the previous version of a Rosetta policy in force, and
// its status names the field; a policy never seen valid applies nowhere.
func TestAuthorizationInvalidUpdateKeepsLastValid(t *testing.T) {
	in := &Inputs{}
	if err := in.AddYAML(mustRead(t, "testdata/golden/authorization.yaml")); err != nil {
		t.Fatal(err)
	}
	b := &Builder{Options: Options{Resolve: fakeResolver}}
	b.Build(in)
	proxy := &Proxy{ID: "p", Namespace: "demo"}
	names := func(ix *Index, listener string) string {
		var out []string
		for _, p := range listenerProxy(t, ix.Generate(proxy), listener).GetAuthorization() {
			out = append(out, p.GetName())
		}
		return strings.Join(out, " ")
	}

	meta := in.MetaAuthorizationPolicies[0].DeepCopy() // demo/orders-callee, generation 2
	meta.Generation = 3
	meta.Spec.Rules[0].To[0].Operation.Ports = []uint32{70000}
	dubbos := in.Objects["DubboAuthorizationPolicy"]
	dubbo := dubbos[0].(*dubbov1.DubboAuthorizationPolicy).DeepCopy() // demo/dubbo-callers, generation 1
	dubbo.Generation = 2
	dubbo.Spec.Action = "AUDIT"
	in.MetaAuthorizationPolicies[0], dubbos[0] = meta, dubbo
	ix := b.Build(in)

	for k, want := range map[string]string{
		"MetaAuthorizationPolicy/demo/orders-callee":                  "spec.rules[0].to[0].operation.ports[0]",
		"DubboAuthorizationPolicy/demo/dubbo-callers@dubbo.aeraki.io": "spec.action",
	} {
		st := ix.AuthorizationStatuses()[k]
		if strings.HasPrefix(k, "Dubbo") {
			st = ix.ProtocolStatuses()[k] // the dubbo translator's kind
		}
		if len(st.Conditions) != 1 || st.Conditions[0].Status != "False" || !strings.Contains(st.Conditions[0].Message, want) ||
			!strings.Contains(st.Conditions[0].Message, "stays in force") {
			t.Errorf("%s: status %+v", k, st)
		}
	}
	if got := names(ix, "orders.demo.svc.cluster.local_8000"); !strings.Contains(got, "demo/orders-callee") {
		t.Errorf("the previous MetaAuthorizationPolicy is not in force: %s", got)
	}
	if got := names(ix, "greeter.demo.svc.cluster.local_20880"); !strings.Contains(got, "demo/dubbo-callers@dubbo.aeraki.io") {
		t.Errorf("the previous DubboAuthorizationPolicy is not in force: %s", got)
	}
	fresh := (&Builder{Options: Options{Resolve: fakeResolver}}).Build(in)
	if got := names(fresh, "orders.demo.svc.cluster.local_8000"); strings.Contains(got, "demo/orders-callee") {
		t.Errorf("an invalid policy reached the proxy: %s", got)
	}
}
