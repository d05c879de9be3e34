package k8s

import (
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

const redisMesh = `apiVersion: v1
kind: Service
metadata: {name: cache, namespace: redis-e2e}
spec:
  ports: [{name: redis, port: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: cache-b, namespace: redis-e2e}
spec:
  ports: [{name: client, appProtocol: redis, port: 6380}]
---
apiVersion: v1
kind: Secret
metadata: {name: cache-auth, namespace: redis-e2e, labels: {redis.rosetta.dev/credentials: "true"}}
stringData: {password: s3cret, username: proxy}
---
apiVersion: v1
kind: Secret
metadata: {name: unlabelled, namespace: redis-e2e}
stringData: {password: hidden}
---
apiVersion: redis.rosetta.dev/v1alpha1
kind: RedisDestination
metadata: {name: cache, namespace: redis-e2e}
spec:
  host: cache
  trafficPolicy:
    connectionPool:
      redis:
        mode: CLUSTER
        auth: {secret: {name: cache-auth}}
        discoveryEndpoints: [10.9.0.1:7000]
---
apiVersion: redis.rosetta.dev/v1alpha1
kind: RedisDestination
metadata: {name: cache-b, namespace: redis-e2e}
spec:
  host: cache-b
  trafficPolicy: {connectionPool: {redis: {auth: {secret: {name: unlabelled}}}}}
---
apiVersion: redis.rosetta.dev/v1alpha1
kind: RedisService
metadata: {name: cache, namespace: redis-e2e}
spec:
  host: [cache]
  redis:
  - route: {host: cache}
  - match: {key: {prefix: "b:", removePrefix: true}}
    route: {host: cache-b}
`

func redisListener(res config.Resources, name string) (map[string]string, []string) {
	var opts map[string]string
	var routes []string
	for _, l := range res.Listeners {
		if l.GetName() != name {
			continue
		}
		var mpp configv1alpha1.MetaProtocolProxy
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&mpp); err == nil {
			opts = mpp.GetCodecOptions()
		}
	}
	for _, rc := range res.Routes {
		if rc.GetName() == name {
			for _, r := range rc.GetRoutes() {
				routes = append(routes, r.GetName()+"->"+r.GetRoute().GetCluster())
			}
		}
	}
	return opts, routes
}

// sdsValue is the inline value of the SDS Secret name in res ("" when
// there is none): the controller sends credentials as Secret resources.
func sdsValue(res config.Resources, name string) string {
	for _, s := range res.Secrets {
		if s.GetName() == name {
			return s.GetGenericSecret().GetSecret().GetInlineString()
		}
	}
	return ""
}

// TestRedisKubernetesMode: RedisService, RedisDestination and a labelled
// Secret reach the proxy through the API server (the password as an SDS
// Secret the listener names); an unlabelled Secret is
// not read, and the RedisDestination naming it says so in status.
func TestRedisKubernetesMode(t *testing.T) {
	c := needCluster(t)
	c.MustNamespace(t, "redis-e2e")
	c.MustKubectl(t, redisMesh, "apply", "-f", "-")
	// The chart's Role for these names: the controller reads both by name,
	// and uses only the labelled one.
	c.Apply(t, redisCredentialRoles(t, "redis-e2e", "cache-auth", "unlabelled"))
	ctrl := c.StartController(t, ctrlBin, "", "")
	rec := startProxyClient(t, ctrl.XDSAddr, "proxy-redis", "redis-e2e")
	const l = "cache.redis-e2e.svc.cluster.local_6379"
	testutil.Eventually(t, 10*time.Second, "redis listener with upstream auth", func() bool {
		r, _, _ := rec.last()
		opts, _ := redisListener(r, l)
		return sdsValue(r, opts["upstream_password_secret"]) == "s3cret" && opts["upstream_username"] == "proxy" && opts["mode"] == "cluster"
	})
	r, _, _ := rec.last()
	_, routes := redisListener(r, l)
	want := "prefix:b:->outbound|6380||cache-b.redis-e2e.svc.cluster.local catch-all->outbound|6379||cache.redis-e2e.svc.cluster.local"
	if got := strings.Join(routes, " "); got != want {
		t.Fatalf("routes = %s, want %s", got, want)
	}
	opts, _ := redisListener(r, "cache-b.redis-e2e.svc.cluster.local_6380")
	if _, ok := opts["upstream_password_secret"]; ok {
		t.Fatalf("an unlabelled Secret was read: %v", opts)
	}
	// Status is written by the leader; a controller from an earlier test may
	// hold the Lease until it expires (15 s).
	testutil.Eventually(t, 40*time.Second, "RedisDestination status names the Secret", func() bool {
		out, _ := c.Kubectl("", "get", "redisdestination", "cache-b", "-n", "redis-e2e", "-o", "jsonpath={.status.conditions[?(@.type==\"ResolvedRefs\")].message}")
		return strings.Contains(out, "no Secret redis-e2e/unlabelled")
	})
}
