package controller_test

import (
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
	"github.com/rosetta-mesh/rosetta/pkg/router"
)

// attrs is a request's attributes, for the compiled routes.
type attrs map[string]string

func (a attrs) Get(k string) (string, bool) { v, ok := a[k]; return v, ok }
func (a attrs) Range(fn func(k, v string) bool) {
	for k, v := range a {
		if !fn(k, v) {
			return
		}
	}
}

// TestRateLimitsTranslate: Aeraki's localRateLimit and globalRateLimit, as
// the proxy compiles them. The service's buckets are shared by its routes
// (a condition's bucket of 2 admits 2 sayHello calls whichever route takes
// them), the global limit sends the descriptor the MetaRouter names to the
// cluster of the rate limit service, and that cluster reaches the
// service's host name.
func TestRateLimitsTranslate(t *testing.T) {
	ix, proxies := controllertest.BuildFile(t, "testdata/golden/ratelimit.yaml", goldenOptions)
	res := ix.Generate(proxies[0])
	tables := map[string]*router.Table{}
	for _, rc := range res.Routes {
		tb, err := router.Compile(rc)
		if err != nil {
			t.Fatalf("the proxy refuses route configuration %s: %v", rc.GetName(), err)
		}
		tables[rc.GetName()] = tb
	}
	dubbo := tables["dubbo-sample-provider.meta-dubbo.svc.cluster.local_20880"]
	if dubbo == nil {
		t.Fatalf("no route configuration for the dubbo service: %v", tables)
	}
	now := time.Now()
	hello := &codec.Message{Attrs: attrs{"interface": "org.apache.dubbo.Greeter", "method": "sayHello"}}
	for i := range 3 {
		r := dubbo.Match(hello)
		if r == nil || r.Name != "hello" {
			t.Fatalf("sayHello took route %v, want hello", r)
		}
		if got, want := r.Action.AllowLocal(hello, now), i < 2; got != want {
			t.Errorf("sayHello call %d: admitted %t, want %t (the condition's bucket holds 2)", i+1, got, want)
		}
	}
	other := &codec.Message{Attrs: attrs{"interface": "org.apache.dubbo.Greeter", "method": "echo"}}
	admitted := 0
	for range 25 {
		if dubbo.Match(other).Action.AllowLocal(other, now) {
			admitted++
		}
	}
	if admitted != 20 {
		t.Errorf("other calls admitted %d, want the default bucket's 20", admitted)
	}

	g := dubbo.Match(hello).Action.GlobalLimit
	if g == nil || dubbo.Match(other).Action.GlobalLimit == nil {
		t.Fatal("a route of the dubbo service has no global rate limit")
	}
	if g.Domain != "production" || !g.DenyOnFail || g.Timeout != 100*time.Millisecond {
		t.Errorf("global limit = %+v", g)
	}
	if v, ok := g.Descriptor(hello); !ok || len(v) != 2 || v[0] != "org.apache.dubbo.Greeter" || v[1] != "sayHello" {
		t.Errorf("descriptor values for sayHello = %v, %t", v, ok)
	}
	if _, ok := g.Descriptor(&codec.Message{Attrs: attrs{"interface": "com.other.Greeter", "method": "sayHello"}}); ok {
		t.Error("a call the global limit's match excludes would ask the service")
	}
	const rls = "outbound|8081||rate-limit-server.meta-dubbo.svc.cluster.local"
	if g.Cluster != rls {
		t.Errorf("global limit cluster %q, want %q", g.Cluster, rls)
	}
	found := false
	for _, c := range res.Clusters {
		if c.GetName() != rls {
			continue
		}
		found = true
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if sa.GetAddress() != "rate-limit-server.meta-dubbo.svc.cluster.local" || sa.GetPortValue() != 8081 {
			t.Errorf("rate limit service cluster reaches %s:%d", sa.GetAddress(), sa.GetPortValue())
		}
	}
	if !found {
		t.Errorf("no cluster %s", rls)
	}

	thrift := tables["thrift-sample-server.meta-dubbo.svc.cluster.local_9090"]
	r := thrift.Match(&codec.Message{Attrs: attrs{}})
	if r == nil || r.Action.Cluster != "outbound|9090||thrift-sample-server.meta-dubbo.svc.cluster.local" {
		t.Fatalf("a MetaRouter with only a localRateLimit routes to %v, want the service", r)
	}
	for i := range 3 {
		if got, want := r.Action.AllowLocal(&codec.Message{Attrs: attrs{}}, now), i < 2; got != want {
			t.Errorf("thrift call %d admitted %t, want %t", i+1, got, want)
		}
	}
}
