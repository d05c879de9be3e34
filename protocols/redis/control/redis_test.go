package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	redisv1 "github.com/rosetta-mesh/rosetta/protocols/redis/api/v1alpha1"
)

// noResolver answers no name: the golden files' hosts are IP addresses,
// and the tests must not depend on the machine's resolver.
func noResolver(context.Context, string) ([]string, error) { return nil, errors.New("no such host") }

var opts = controller.Options{Resolve: noResolver}

// TestGolden translates each testdata/golden/*.yaml (see
// controllertest.Golden); go test -run TestGolden -update rewrites them.
func TestGolden(t *testing.T) {
	controllertest.Golden(t, "testdata/golden/*.yaml", opts)
}

func buildFile(t *testing.T, path string) (*controller.Index, []*controller.Proxy) {
	t.Helper()
	return controllertest.BuildFile(t, path, opts)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// describe summarises what a route does to a command, for a table.
func describe(r *configv1alpha1.Route) string {
	if r == nil {
		return "no route"
	}
	a := r.GetRoute()
	s := a.GetCluster()
	for _, m := range a.GetMirror() {
		s += fmt.Sprintf(" mirror=%s@%g", m.GetCluster(), m.GetPercentage())
	}
	if d := a.GetFault().GetDelay(); d != nil {
		s += fmt.Sprintf(" delay=%s@%g", d.GetFixedDelay().AsDuration(), d.GetPercentage())
	}
	if ab := a.GetFault().GetAbort(); ab != nil {
		s += fmt.Sprintf(" abort=%s@%g", ab.GetStatus(), ab.GetPercentage())
	}
	for _, kv := range a.GetRequestMutation() {
		s += fmt.Sprintf(" %s=%s", kv.GetKey(), kv.GetValue())
	}
	return s
}

// TestRedisRoutingSimulation states the Redis translation as a table: a
// command with this name and key, sent to this port, takes a route that
// sends it to this cluster, with these mirrors, faults and mutations.
func TestRedisRoutingSimulation(t *testing.T) {
	const (
		cache  = "outbound|6379||cache.demo.svc.cluster.local"
		cacheB = "outbound|6380||cache-b.demo.svc.cluster.local"
		shadow = "outbound|6390||shadow.example.internal"
		orders = "outbound|6379||orders-redis.shop.svc.cluster.local"
		audit  = "outbound|6379||audit-redis.shop.svc.cluster.local"
	)
	cases := []struct {
		file, proxy string
		port        uint32
		command     string
		key         string // "" for keyless commands
		want        string
	}{
		// The longest prefix wins; b: is removed; reads are delayed by the GET fault.
		{"redis-proxy", "waypoint", 6379, "GET", "b:1", cacheB + " delay=10ms@5 redis.strip_prefix=b:"},
		{"redis-proxy", "waypoint", 6379, "SET", "b:1", cacheB + " delay=1ms@0.5 abort=fault@1 redis.strip_prefix=b:"},
		{"redis-proxy", "waypoint", 6379, "HSET", "b:long:1", cacheB + " mirror=" + shadow + "@100 delay=1ms@0.5"},
		// The catch-all mirrors writes at 50%, not reads.
		{"redis-proxy", "waypoint", 6379, "SET", "a:1", cache + " mirror=" + shadow + "@50 delay=1ms@0.5 abort=fault@1"},
		{"redis-proxy", "waypoint", 6379, "INCR", "a:1", cache + " mirror=" + shadow + "@50 delay=1ms@0.5"},
		{"redis-proxy", "waypoint", 6379, "GET", "a:1", cache + " delay=10ms@5"},
		{"redis-proxy", "waypoint", 6379, "HGETALL", "a:1", cache + " delay=1ms@0.5"},
		{"redis-proxy", "waypoint", 6379, "PUBLISH", "", cache + " delay=1ms@0.5"},
		{"redis-proxy", "waypoint", 6379, "FLUSHALL", "", cache + " mirror=" + shadow + "@50 delay=1ms@0.5"},
		// The case of a key prefix matters.
		{"redis-proxy", "waypoint", 6379, "DEL", "B:1", cache + " mirror=" + shadow + "@50 delay=1ms@0.5"},
		// A Redis port without a RedisService sends everything to itself.
		{"redis-proxy", "waypoint", 6380, "GET", "x", cacheB},
		{"redis-cluster", "app", 6379, "GET", "order:1", orders},
		{"redis-cluster", "app", 6379, "GET", "audit:1", audit},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%d/%s %s", c.file, c.port, c.command, c.key), func(t *testing.T) {
			ix, proxies := buildFile(t, "testdata/golden/"+c.file+".yaml")
			attrs := map[string]string{"command": c.command}
			if c.key != "" {
				attrs["key"], attrs["hash_key"] = c.key, c.key
			}
			r := controllertest.Route(t, ix.Generate(proxies[0]), c.port, attrs)
			if got := describe(r); got != c.want {
				t.Fatalf("%s %s took %q\n got %s\nwant %s", c.command, c.key, r.GetName(), got, c.want)
			}
			if hp := r.GetRoute().GetHashPolicy(); len(hp) != 1 || strings.Join(hp[0].GetAttributes(), ",") != "hash_key" {
				t.Fatalf("hash policy = %v, want hash_key (pools hashed by key)", hp)
			}
		})
	}
}

// TestRedisResourcesPassProxyValidate runs every Redis golden file's
// resources through the proxy's own validation (the listeners are built
// with the real redis codec and its options), so the controller cannot
// emit config the proxy would refuse.
func TestRedisResourcesPassProxyValidate(t *testing.T) {
	for _, f := range []string{"redis-proxy", "redis-cluster"} {
		ix, proxies := buildFile(t, "testdata/golden/"+f+".yaml")
		for _, p := range proxies {
			res := ix.Generate(p)
			if len(res.Listeners) == 0 {
				t.Fatalf("%s: no listener for %s", f, p.ID)
			}
			if err := proxy.Validate(*res); err != nil {
				t.Errorf("%s: proxy %s refuses the resources: %v", f, p.ID, err)
			}
		}
	}
}

// TestRedisSecret: upstream credentials come from the Secret; without it
// the listener has none and the RedisDestination says which Secret is
// missing; once it appears, the next build uses it.
func TestRedisSecret(t *testing.T) {
	in := &controller.Inputs{}
	if err := in.AddYAML(mustRead(t, "testdata/golden/redis-cluster.yaml")); err != nil {
		t.Fatal(err)
	}
	secrets := in.Secrets
	in.Secrets = nil
	b := &controller.Builder{Options: opts}
	ix := b.Build(in)
	p := &controller.Proxy{ID: "app", Namespace: "shop"}
	res := ix.Generate(p)
	opts := controllertest.ListenerOptions(t, res)
	if _, ok := opts["upstream_password_secret"]; ok || opts["mode"] != "cluster" || len(res.Secrets) != 0 {
		t.Fatalf("options without the Secret = %v, secrets %v", opts, res.Secrets)
	}
	st := ix.ProtocolStatuses()["RedisDestination/shop/orders-redis"]
	if len(st.Conditions) != 2 || st.Conditions[1].Reason != "UnknownSecret" ||
		!strings.Contains(st.Conditions[1].Message, "spec.trafficPolicy.connectionPool.redis.auth: no Secret shop/orders-redis-auth") {
		t.Fatalf("status = %+v", st)
	}
	in.Secrets = secrets
	res = b.Build(in).Generate(p)
	opts = controllertest.ListenerOptions(t, res)
	if _, inline := opts["upstream_password"]; inline || opts["upstream_username"] != "orders" {
		t.Fatalf("options with the Secret = %v", opts)
	}
	if name := opts["upstream_password_secret"]; name != "Secret/shop/orders-redis-auth/pass" || sdsValue(res, name) != "s3cret" {
		t.Fatalf("upstream_password_secret = %q, its SDS Secret holds %q", name, sdsValue(res, name))
	}
}

// sdsValue is the inline value of the SDS Secret name in res.
func sdsValue(res *config.Resources, name string) string {
	for _, s := range res.Secrets {
		if s.GetName() == name {
			return s.GetGenericSecret().GetSecret().GetInlineString()
		}
	}
	return ""
}

// TestRedisInvalidUpdateKeepsLastValid: a RedisService update the
// controller refuses leaves the previous version in force, and its status
// names the field.
func TestRedisInvalidUpdateKeepsLastValid(t *testing.T) {
	in := &controller.Inputs{}
	if err := in.AddYAML(mustRead(t, "testdata/golden/redis-proxy.yaml")); err != nil {
		t.Fatal(err)
	}
	b := &controller.Builder{}
	b.Build(in)
	bad := in.Objects[ServiceKind][0].(*redisv1.RedisService).DeepCopy()
	bad.Generation = 4
	bad.Spec.Redis[1].Match.Key.Prefix = "b:long:" // now a duplicate
	in.Objects[ServiceKind][0] = bad
	ix := b.Build(in)
	st := ix.ProtocolStatuses()["RedisService/demo/cache"]
	if len(st.Conditions) != 1 || st.Conditions[0].Status != "False" || st.Generation != 4 ||
		!strings.Contains(st.Conditions[0].Message, `spec.redis[2].match.key.prefix: Duplicate value: "b:long:"`) ||
		!strings.Contains(st.Conditions[0].Message, "generation 3 stays in force") {
		t.Fatalf("status = %+v", st)
	}
	r := controllertest.Route(t, ix.Generate(&controller.Proxy{Namespace: "demo"}), 6379, map[string]string{"command": "INCR", "key": "b:1"})
	if r.GetName() != "prefix:b:" {
		t.Fatalf("the previous routes are not in force: %s", r.GetName())
	}
	// A controller that never saw a valid version applies nothing of it.
	r = controllertest.Route(t, (&controller.Builder{}).Build(in).Generate(&controller.Proxy{Namespace: "demo"}), 6379, map[string]string{"command": "INCR", "key": "b:1"})
	if r.GetName() != "default" {
		t.Fatalf("an invalid RedisService reached the proxy: %s", r.GetName())
	}
}

// TestRedisReadCommands: the codec marks some commands read-only, and
// every name is upper case and unique (they form a regular expression
// matched against the codec's "command").
func TestRedisReadCommands(t *testing.T) {
	if len(readCommands) == 0 || !readSet["GET"] || readSet["SET"] {
		t.Fatalf("read commands %v", readCommands)
	}
	seen := map[string]bool{}
	for _, c := range readCommands {
		if c != strings.ToUpper(c) || seen[c] {
			t.Fatalf("bad or duplicate read command %q", c)
		}
		seen[c] = true
	}
}
