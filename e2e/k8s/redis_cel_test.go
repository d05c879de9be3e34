package k8s

import (
	"strings"
	"testing"
)

func TestRedisCRDValidation(t *testing.T) {
	c := needCluster(t)
	svcHead := "apiVersion: redis.rosetta.dev/v1alpha1\nkind: RedisService\nmetadata: {name: cel, namespace: default}\nspec:\n  host: [cache]\n"
	dstHead := "apiVersion: redis.rosetta.dev/v1alpha1\nkind: RedisDestination\nmetadata: {name: cel, namespace: default}\nspec:\n  host: cache\n"
	bad := []struct{ name, doc, want string }{
		{"two catch-alls", svcHead + "  redis:\n  - route: {host: a}\n  - route: {host: b}\n    match: {key: {prefix: ''}}\n", "at most one catch-all"},
		{"remove no prefix", svcHead + "  redis:\n  - route: {host: a}\n    match: {key: {removePrefix: true}}\n", "removePrefix needs a prefix"},
		{"delay without delay", svcHead + "  redis:\n  - route: {host: a}\n  faults:\n  - {type: DELAY}\n", "a DELAY fault needs a delay"},
		{"fault type", svcHead + "  redis:\n  - route: {host: a}\n  faults:\n  - {type: ABORT}\n", "Unsupported value"},
		{"no routes", svcHead, "spec.redis: Required value"},
		{"mirror pct", svcHead + "  redis:\n  - route: {host: a}\n    mirror: [{route: {host: b}, percentage: {value: 101}}]\n", "less than or equal to 100"},
		{"auth both", dstHead + "  trafficPolicy: {connectionPool: {redis: {auth: {plain: {password: p}, secret: {name: s}}}}}\n", "set exactly one of secret and plain"},
		{"hash cluster", dstHead + "  trafficPolicy: {connectionPool: {redis: {mode: CLUSTER, hashByKey: true}}}\n", "hashByKey is for pools"},
		{"replica proxy", dstHead + "  trafficPolicy: {connectionPool: {redis: {readPolicy: PREFER_REPLICA}}}\n", "needs mode CLUSTER"},
		{"mode", dstHead + "  trafficPolicy: {connectionPool: {redis: {mode: SENTINEL}}}\n", "Unsupported value"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			out, err := c.Kubectl(b.doc, "apply", "--dry-run=server", "-f", "-")
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			if !strings.Contains(out, b.want) {
				t.Fatalf("refused without %q:\n%s", b.want, out)
			}
		})
	}
	good := []string{
		svcHead + `  settings: {opTimeout: 2s, readPolicy: MASTER, enableHashtagging: true, auth: {secret: {name: s}}}
  redis:
  - route: {host: a}
    mirror: [{route: {host: m}, percentage: {value: 10}, excludeReadCommands: true}]
  - match: {key: {prefix: "b:", removePrefix: true}}
    route: {host: b, port: 6380}
  faults:
  - {type: ERROR, percentage: {value: 1}, commands: [SET]}
  - {delay: 1s}
`,
		dstHead + "  trafficPolicy: {connectionPool: {tcp: {maxConnections: 5, connectTimeout: 1s}, redis: {mode: CLUSTER, readPolicy: PREFER_REPLICA, auth: {secret: {name: s, passwordField: p}}, discoveryEndpoints: ['10.0.0.1:7000']}}}\n",
		dstHead + "  trafficPolicy: {connectionPool: {redis: {mode: PROXY, hashByKey: true, auth: {plain: {password: p}}}}}\n",
	}
	for i, g := range good {
		if out, err := c.Kubectl(g, "apply", "--dry-run=server", "-f", "-"); err != nil {
			t.Fatalf("good[%d] refused: %v\n%s", i, err, out)
		}
	}
}
