package v1alpha1

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/rosetta-mesh/rosetta/pkg/apis/fielderrors"
)

// aerakiPolicy is Aeraki's example, field for field, in Aeraki's group.
const aerakiPolicy = `
apiVersion: dubbo.aeraki.io/v1alpha1
kind: DubboAuthorizationPolicy
metadata: {name: demo, namespace: istio-system}
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/dubbo/sa/dubbo-consumer"]
        notNamespaces: [dev]
    to:
    - operation:
        interfaces: ["org.apache.dubbo.samples.basic.api.DemoService"]
        methods: ["sayHello"]
        notMethods: ["shutdown*"]
`

func parse(t *testing.T, s string) *DubboAuthorizationPolicy {
	t.Helper()
	var p DubboAuthorizationPolicy
	if err := yaml.UnmarshalStrict([]byte(s), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestAerakiPolicyIsValid(t *testing.T) {
	p := parse(t, aerakiPolicy)
	if errs := p.Validate(); len(errs) > 0 {
		t.Fatalf("Aeraki's policy refused: %v", errs)
	}
	if p.Spec.Rules[0].To[0].Operation.Interfaces[0] != "org.apache.dubbo.samples.basic.api.DemoService" {
		t.Fatalf("spec %+v", p.Spec)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*DubboAuthorizationPolicy)
		field  string
		reason string
	}{
		{"action", func(p *DubboAuthorizationPolicy) { p.Spec.Action = "AUDIT" }, "spec.action", fielderrors.Unsupported},
		{"no source", func(p *DubboAuthorizationPolicy) { p.Spec.Rules[0].From[0].Source = nil }, "spec.rules[0].from[0].source", fielderrors.Invalid},
		{"empty source", func(p *DubboAuthorizationPolicy) { p.Spec.Rules[0].From[0].Source = &Source{} }, "spec.rules[0].from[0].source", fielderrors.Invalid},
		{"empty principal", func(p *DubboAuthorizationPolicy) { p.Spec.Rules[0].From[0].Source.Principals[0] = "" },
			"spec.rules[0].from[0].source.principals[0]", fielderrors.Invalid},
		{"empty operation", func(p *DubboAuthorizationPolicy) { p.Spec.Rules[0].To[0].Operation = &Operation{} }, "spec.rules[0].to[0].operation", fielderrors.Invalid},
		{"empty method", func(p *DubboAuthorizationPolicy) { p.Spec.Rules[0].To[0].Operation.NotMethods = []string{""} },
			"spec.rules[0].to[0].operation.notMethods[0]", fielderrors.Invalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := parse(t, aerakiPolicy)
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
