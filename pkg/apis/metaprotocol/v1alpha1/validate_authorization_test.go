package v1alpha1

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/rosetta-mesh/rosetta/pkg/apis/fielderrors"
)

const validAuthz = `
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaAuthorizationPolicy
metadata: {name: p, namespace: demo}
spec:
  hosts: [greeter, orders.demo.svc.cluster.local]
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}
  - {kind: Service, name: greeter, namespace: demo}
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/web/*"], notNamespaces: [dev], ipBlocks: [10.0.0.0/8, "2001:db8::1"]}
    to:
    - operation:
        ports: [20880]
        notPorts: [20881]
        attributes:
          method: {values: [sayHello, "get*"]}
          interface: {notValues: [org.example.Admin]}
  - {}
`

func parseAuthz(t *testing.T, s string) *MetaAuthorizationPolicy {
	t.Helper()
	var p MetaAuthorizationPolicy
	if err := yaml.UnmarshalStrict([]byte(s), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestValidAuthorizationPolicy(t *testing.T) {
	if errs := parseAuthz(t, validAuthz).Validate(); len(errs) > 0 {
		t.Fatalf("valid policy refused: %v", errs)
	}
}

// TestValidateAuthorizationNamesTheField: each bad spec is refused with the
// field's path in the message and the right status reason.
func TestValidateAuthorizationNamesTheField(t *testing.T) {
	src := func(p *MetaAuthorizationPolicy) *AuthorizationSource { return &p.Spec.Rules[0].From[0].Source }
	op := func(p *MetaAuthorizationPolicy) *AuthorizationOperation { return &p.Spec.Rules[0].To[0].Operation }
	cases := []struct {
		name   string
		mutate func(*MetaAuthorizationPolicy)
		field  string
		reason string
	}{
		{"action", func(p *MetaAuthorizationPolicy) { p.Spec.Action = "CUSTOM" }, "spec.action", ReasonUnsupported},
		{"wildcard host", func(p *MetaAuthorizationPolicy) { p.Spec.Hosts[1] = "*.demo" }, "spec.hosts[1]", ReasonInvalid},
		{"selector and targetRefs", func(p *MetaAuthorizationPolicy) { p.Spec.Selector = &WorkloadSelector{} }, "spec.targetRefs", ReasonInvalid},
		{"target kind", func(p *MetaAuthorizationPolicy) { p.Spec.TargetRefs[0].Kind = "GatewayClass" }, "spec.targetRefs[0].kind", ReasonUnsupported},
		{"target group", func(p *MetaAuthorizationPolicy) { p.Spec.TargetRefs[1].Group = "apps" }, "spec.targetRefs[1].group", ReasonUnsupported},
		{"target namespace", func(p *MetaAuthorizationPolicy) { p.Spec.TargetRefs[1].Namespace = "other" }, "spec.targetRefs[1].namespace", ReasonInvalid},
		{"target name", func(p *MetaAuthorizationPolicy) { p.Spec.TargetRefs[1].Name = "" }, "spec.targetRefs[1].name", ReasonInvalid},
		{"empty source", func(p *MetaAuthorizationPolicy) { *src(p) = AuthorizationSource{} }, "spec.rules[0].from[0].source", ReasonInvalid},
		{"empty principal", func(p *MetaAuthorizationPolicy) { src(p).Principals = []string{""} }, "spec.rules[0].from[0].source.principals[0]", ReasonInvalid},
		{"bad CIDR", func(p *MetaAuthorizationPolicy) { src(p).IPBlocks[1] = "10.0.0.0/33" }, "spec.rules[0].from[0].source.ipBlocks[1]", ReasonInvalid},
		{"zone", func(p *MetaAuthorizationPolicy) { src(p).NotIPBlocks = []string{"fe80::1%eth0"} }, "spec.rules[0].from[0].source.notIpBlocks[0]", ReasonInvalid},
		{"empty operation", func(p *MetaAuthorizationPolicy) { *op(p) = AuthorizationOperation{} }, "spec.rules[0].to[0].operation", ReasonInvalid},
		{"port 0", func(p *MetaAuthorizationPolicy) { op(p).NotPorts = []uint32{0} }, "spec.rules[0].to[0].operation.notPorts[0]", ReasonInvalid},
		{"attribute without values", func(p *MetaAuthorizationPolicy) { op(p).Attributes["method"] = AttributeValues{} }, "spec.rules[0].to[0].operation.attributes[method]", ReasonInvalid},
		{"empty attribute value", func(p *MetaAuthorizationPolicy) {
			op(p).Attributes["method"] = AttributeValues{NotValues: []string{""}}
		},
			"spec.rules[0].to[0].operation.attributes[method].notValues[0]", ReasonInvalid},
		{"attribute name", func(p *MetaAuthorizationPolicy) { op(p).Attributes[""] = AttributeValues{Values: []string{"x"}} },
			"spec.rules[0].to[0].operation.attributes[]", ReasonInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := parseAuthz(t, validAuthz)
			c.mutate(p)
			errs := p.Validate()
			if len(errs) == 0 {
				t.Fatal("accepted")
			}
			if msg := fielderrors.Message(errs); !strings.Contains(msg, c.field) {
				t.Fatalf("message %q does not name %s", msg, c.field)
			}
			if r := fielderrors.Reason(errs); r != c.reason {
				t.Fatalf("reason %s, want %s", r, c.reason)
			}
		})
	}
}

func TestAuthorizationDeepCopyIsIndependent(t *testing.T) {
	p := parseAuthz(t, validAuthz)
	cp := p.DeepCopy()
	cp.Spec.Rules[0].To[0].Operation.Attributes["method"].Values[0] = "changed"
	cp.Spec.Rules[0].From[0].Source.Principals[0] = "changed"
	if p.Spec.Rules[0].To[0].Operation.Attributes["method"].Values[0] != "sayHello" || p.Spec.Rules[0].From[0].Source.Principals[0] == "changed" {
		t.Fatal("DeepCopy shares memory")
	}
}
