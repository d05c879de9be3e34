package v1alpha1

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/rosetta-mesh/rosetta/pkg/apis/fielderrors"
)

const validRouter = `
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: r, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  routes:
  - name: split
    match:
      attributes:
        method: {exact: sayHello}
        user: {regex: "vip-.*"}
        trace: {}
    route:
    - {destination: {host: greeter, subset: v1}, weight: 20}
    - {destination: {host: greeter, subset: v2, port: {number: 20880}}, weight: 80}
    mirror: {host: greeter, subset: v3}
    mirrorPercentage: {value: 12.5}
    requestMutation: [{key: k, value: v}]
    timeout: 3s
    retries: {attempts: 2, perTryTimeout: 1s, retryOn: "connect-failure,timeout"}
    fault: {delay: {fixedDelay: 10ms, percentage: {value: 1}}, abort: {status: unavailable}}
    hashPolicy: [user]
    localRateLimit: {maxTokens: 10, fillInterval: 1s}
`

func parse(t *testing.T, s string) *MetaRouter {
	t.Helper()
	var mr MetaRouter
	if err := yaml.UnmarshalStrict([]byte(s), &mr); err != nil {
		t.Fatal(err)
	}
	return &mr
}

func TestValidRouter(t *testing.T) {
	mr := parse(t, validRouter)
	if errs := mr.Validate(); len(errs) > 0 {
		t.Fatalf("valid router refused: %v", errs)
	}
	if mr.Spec.Routes[0].Timeout.Duration != 3*time.Second {
		t.Fatalf("timeout %v", mr.Spec.Routes[0].Timeout)
	}
}

// TestValidateNamesTheField: each bad spec is refused with the field's
// path in the message and the right status reason.
func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*MetaRouter)
		field  string
		reason string
	}{
		{"weights", func(m *MetaRouter) { m.Spec.Routes[0].Route[0].Weight = 30 }, "spec.routes[0].route", ReasonInvalid},
		{"two matchers", func(m *MetaRouter) {
			s := "x"
			a := m.Spec.Routes[0].Match.Attributes["method"]
			a.Prefix = &s
			m.Spec.Routes[0].Match.Attributes["method"] = a
		}, "spec.routes[0].match.attributes[method]", ReasonInvalid},
		{"regex", func(m *MetaRouter) {
			s := "a("
			m.Spec.Routes[0].Match.Attributes["user"] = StringMatch{Regex: &s}
		}, "spec.routes[0].match.attributes[user].regex", ReasonInvalid},
		{"percent", func(m *MetaRouter) { m.Spec.Routes[0].MirrorPercentage.Value = 101 }, "spec.routes[0].mirrorPercentage.value", ReasonInvalid},
		{"retry on", func(m *MetaRouter) { m.Spec.Routes[0].Retries.RetryOn = "5xx" }, "spec.routes[0].retries.retryOn", ReasonUnsupported},
		{"abort status", func(m *MetaRouter) { m.Spec.Routes[0].Fault.Abort.Status = "teapot" }, "spec.routes[0].fault.abort.status", ReasonUnsupported},
		{"negative timeout", func(m *MetaRouter) { m.Spec.Routes[0].Timeout = &metav1.Duration{Duration: -time.Second} }, "spec.routes[0].timeout", ReasonInvalid},
		{"gateway", func(m *MetaRouter) { m.Spec.Gateways = []string{"istio-system/Gate_way"} }, "spec.gateways[0]", ReasonInvalid},
		{"global rate limit", func(m *MetaRouter) { m.Spec.GlobalRateLimit = &GlobalRateLimit{Domain: "x"} }, "spec.globalRateLimit", ReasonUnsupported},
		{"service rate limit", func(m *MetaRouter) {
			m.Spec.LocalRateLimit = &LocalRateLimit{TokenBucket: &TokenBucket{MaxTokens: 1, FillInterval: metav1.Duration{Duration: time.Second}}}
		}, "spec.localRateLimit", ReasonUnsupported},
		{"no hosts", func(m *MetaRouter) { m.Spec.Hosts = nil }, "spec.hosts", ReasonInvalid},
		{"wildcard host", func(m *MetaRouter) { m.Spec.Hosts = []string{"*.demo"} }, "spec.hosts[0]", ReasonInvalid},
		{"duplicate names", func(m *MetaRouter) { m.Spec.Routes = append(m.Spec.Routes, m.Spec.Routes[0]) }, "spec.routes[1].name", ReasonInvalid},
		{"empty bucket", func(m *MetaRouter) { m.Spec.Routes[0].LocalRateLimit.MaxTokens = 0 }, "spec.routes[0].localRateLimit.maxTokens", ReasonInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mr := parse(t, validRouter)
			c.mutate(mr)
			errs := mr.Validate()
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

func TestDeepCopyIsIndependent(t *testing.T) {
	mr := parse(t, validRouter)
	cp := mr.DeepCopy()
	cp.Spec.Routes[0].Route[0].Weight = 1
	*cp.Spec.Routes[0].Match.Attributes["method"].Exact = "changed"
	if mr.Spec.Routes[0].Route[0].Weight != 20 || *mr.Spec.Routes[0].Match.Attributes["method"].Exact != "sayHello" {
		t.Fatal("DeepCopy shares memory")
	}
}

func TestApplicationProtocolCodecName(t *testing.T) {
	ap := &ApplicationProtocol{Spec: ApplicationProtocolSpec{Protocol: "dubbo", Codec: "aeraki.meta_protocol.codec.dubbo"}}
	if ap.CodecName() != "dubbo" || len(ap.Validate()) != 0 {
		t.Fatal(ap.CodecName())
	}
	if len((&ApplicationProtocol{}).Validate()) != 2 {
		t.Fatal("empty ApplicationProtocol accepted")
	}
}
