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
  localRateLimit:
    tokenBucket: {maxTokens: 100, tokensPerFill: 10, fillInterval: 1s}
    conditions:
    - match: {attributes: {method: {exact: sayHello}}}
      tokenBucket: {maxTokens: 5, fillInterval: 1s}
  globalRateLimit:
    match: {attributes: {interface: {prefix: org.}}}
    domain: dubbo
    requestTimeout: 50ms
    denyOnFail: true
    rateLimitService: "outbound|8081||ratelimit.infra.svc.cluster.local"
    descriptors:
    - {property: method, descriptorKey: method}
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
		{"global rate limit domain", func(m *MetaRouter) { m.Spec.GlobalRateLimit.Domain = "" }, "spec.globalRateLimit.domain", ReasonInvalid},
		{"global rate limit service", func(m *MetaRouter) { m.Spec.GlobalRateLimit.RateLimitService = "outbound|x||rls" }, "spec.globalRateLimit.rateLimitService", ReasonInvalid},
		{"global rate limit service subset", func(m *MetaRouter) { m.Spec.GlobalRateLimit.RateLimitService = "outbound|8081|v1|rls" }, "spec.globalRateLimit.rateLimitService", ReasonInvalid},
		{"global rate limit no service", func(m *MetaRouter) { m.Spec.GlobalRateLimit.RateLimitService = "" }, "spec.globalRateLimit.rateLimitService", ReasonInvalid},
		{"global rate limit timeout", func(m *MetaRouter) { m.Spec.GlobalRateLimit.RequestTimeout.Duration = 0 }, "spec.globalRateLimit.requestTimeout", ReasonInvalid},
		{"global rate limit no descriptors", func(m *MetaRouter) { m.Spec.GlobalRateLimit.Descriptors = nil }, "spec.globalRateLimit.descriptors", ReasonInvalid},
		{"global rate limit descriptor key", func(m *MetaRouter) { m.Spec.GlobalRateLimit.Descriptors[0].DescriptorKey = "" }, "spec.globalRateLimit.descriptors[0].descriptorKey", ReasonInvalid},
		{"global rate limit descriptor property", func(m *MetaRouter) { m.Spec.GlobalRateLimit.Descriptors[0].Property = "" }, "spec.globalRateLimit.descriptors[0].property", ReasonInvalid},
		{"global rate limit match", func(m *MetaRouter) {
			s := "a("
			m.Spec.GlobalRateLimit.Match.Attributes["interface"] = StringMatch{Regex: &s}
		}, "spec.globalRateLimit.match.attributes[interface].regex", ReasonInvalid},
		{"service rate limit empty", func(m *MetaRouter) { m.Spec.LocalRateLimit = &LocalRateLimit{} }, "spec.localRateLimit", ReasonInvalid},
		{"service rate limit bucket", func(m *MetaRouter) { m.Spec.LocalRateLimit.TokenBucket.FillInterval.Duration = 0 }, "spec.localRateLimit.tokenBucket.fillInterval", ReasonInvalid},
		{"service rate limit condition bucket", func(m *MetaRouter) { m.Spec.LocalRateLimit.Conditions[0].TokenBucket.MaxTokens = 0 }, "spec.localRateLimit.conditions[0].tokenBucket.maxTokens", ReasonInvalid},
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

func TestRateLimitServiceAddress(t *testing.T) {
	for _, c := range []struct {
		in   string
		host string
		port uint32
	}{
		{"outbound|8081||ratelimit.infra.svc.cluster.local", "ratelimit.infra.svc.cluster.local", 8081},
		{"ratelimit.infra:8081", "ratelimit.infra", 8081},
		{"127.0.0.1:9", "127.0.0.1", 9},
	} {
		g := &GlobalRateLimit{RateLimitService: c.in}
		host, port, err := g.ServiceAddress()
		if err != nil || host != c.host || port != c.port {
			t.Errorf("ServiceAddress(%q) = %q, %d, %v; want %q, %d", c.in, host, port, err, c.host, c.port)
		}
	}
	for _, bad := range []string{"ratelimit", "inbound|8081||x", "outbound|0||x", "outbound|8081||", "x:99999", "outbound|1|||x"} {
		if _, _, err := (&GlobalRateLimit{RateLimitService: bad}).ServiceAddress(); err == nil {
			t.Errorf("ServiceAddress(%q) accepted", bad)
		}
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
