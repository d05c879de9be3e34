package v1alpha1

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/rosetta-mesh/rosetta/pkg/apis/fielderrors"
)

// aerakiService uses every field of Aeraki's RedisService that Rosetta
// honours or accepts.
const aerakiService = `
apiVersion: redis.rosetta.dev/v1alpha1
kind: RedisService
metadata: {name: cache, namespace: demo}
spec:
  host: [cache.demo.svc.cluster.local]
  settings:
    opTimeout: 2s
    enableCommandStats: true
    maxBufferSizeBeforeFlush: 1024
    bufferFlushTimeout: 3ms
    maxUpstreamUnknownConnections: 100
    enableHashtagging: true
    enableRedirection: true
    readPolicy: MASTER
    auth: {secret: {name: cache-auth, passwordField: pw}}
  redis:
  - route: {host: cache}
  - match: {key: {prefix: "b:", removePrefix: true}}
    route: {host: cache-b, port: 6380}
    mirror:
    - route: {host: shadow}
      percentage: {value: 12.5}
      excludeReadCommands: true
  faults:
  - {type: DELAY, delay: 10ms, percentage: {value: 5}, commands: [get]}
  - {type: ERROR, commands: [SET]}
`

const aerakiDestination = `
apiVersion: redis.rosetta.dev/v1alpha1
kind: RedisDestination
metadata: {name: cache, namespace: demo}
spec:
  host: cache
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 1s}
      redis:
        mode: CLUSTER
        auth: {plain: {username: u, password: p}}
        discoveryEndpoints: [10.0.0.1:7000, "redis-0.redis:7000", "[fd00::1]:7000"]
        readPolicy: PREFER_REPLICA
`

func strict[T any](t *testing.T, s string) *T {
	t.Helper()
	v := new(T)
	if err := yaml.UnmarshalStrict([]byte(s), v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidAerakiObjects(t *testing.T) {
	if errs := strict[RedisService](t, aerakiService).Validate(); len(errs) > 0 {
		t.Fatalf("RedisService: %v", errs)
	}
	if errs := strict[RedisDestination](t, aerakiDestination).Validate(); len(errs) > 0 {
		t.Fatalf("RedisDestination: %v", errs)
	}
}

// TestRedisServiceValidate: each bad input is refused with an error naming
// the field, and the reason tells invalid from unsupported.
func TestRedisServiceValidate(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(*RedisService)
		field  string
		reason string
	}{
		{"no host", func(r *RedisService) { r.Spec.Host = nil }, "spec.host", ReasonInvalid},
		{"wildcard host", func(r *RedisService) { r.Spec.Host = []string{"*.demo"} }, "spec.host[0]", ReasonInvalid},
		{"no routes", func(r *RedisService) { r.Spec.Redis = nil }, "spec.redis", ReasonInvalid},
		{"two catch-alls", func(r *RedisService) { r.Spec.Redis[1].Match = nil }, "spec.redis[1].match", ReasonInvalid},
		{"duplicate prefix", func(r *RedisService) {
			r.Spec.Redis = append(r.Spec.Redis, Route{Match: &RouteMatch{Key: &KeyMatch{Prefix: "b:"}}, Route: &Destination{Host: "x"}})
		}, "spec.redis[2].match.key.prefix", ReasonInvalid},
		{"remove empty prefix", func(r *RedisService) {
			r.Spec.Redis[0].Match = &RouteMatch{Key: &KeyMatch{RemovePrefix: true}}
		}, "spec.redis[0].match.key.removePrefix", ReasonInvalid},
		{"no destination", func(r *RedisService) { r.Spec.Redis[0].Route = nil }, "spec.redis[0].route", ReasonInvalid},
		{"no destination host", func(r *RedisService) { r.Spec.Redis[0].Route.Host = "" }, "spec.redis[0].route.host", ReasonInvalid},
		{"mirror percentage", func(r *RedisService) { r.Spec.Redis[1].Mirror[0].Percentage.Value = 101 }, "spec.redis[1].mirror[0].percentage.value", ReasonInvalid},
		{"mirror host", func(r *RedisService) { r.Spec.Redis[1].Mirror[0].Route = nil }, "spec.redis[1].mirror[0].route", ReasonInvalid},
		{"delay without delay", func(r *RedisService) { r.Spec.Faults[0].Delay = nil }, "spec.faults[0].delay", ReasonInvalid},
		{"fault type", func(r *RedisService) { r.Spec.Faults[1].Type = "ABORT" }, "spec.faults[1].type", ReasonUnsupported},
		{"fault command", func(r *RedisService) { r.Spec.Faults[1].Commands = []string{"GET|SET"} }, "spec.faults[1].commands[0]", ReasonInvalid},
		{"fault percentage", func(r *RedisService) { r.Spec.Faults[1].Percentage = &Percent{Value: -1} }, "spec.faults[1].percentage.value", ReasonInvalid},
		{"case insensitive", func(r *RedisService) { r.Spec.Settings.CaseInsensitive = true }, "spec.settings.caseInsensitive", ReasonUnsupported},
		{"read policy", func(r *RedisService) { r.Spec.Settings.ReadPolicy = ReadAny }, "spec.settings.readPolicy", ReasonUnsupported},
		{"auth both", func(r *RedisService) { r.Spec.Settings.Auth.Plain = &PlainAuth{Password: "x"} }, "spec.settings.auth", ReasonInvalid},
		{"auth secret name", func(r *RedisService) { r.Spec.Settings.Auth.Secret.Name = "" }, "spec.settings.auth.secret.name", ReasonInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := strict[RedisService](t, aerakiService)
			c.edit(r)
			errs := r.Validate()
			if len(errs) == 0 {
				t.Fatal("accepted")
			}
			if errs[0].Field != c.field || fielderrors.Reason(errs) != c.reason {
				t.Fatalf("got %s (%s), want field %s (%s)", fielderrors.Message(errs), fielderrors.Reason(errs), c.field, c.reason)
			}
		})
	}
}

func TestRedisDestinationValidate(t *testing.T) {
	const redis = "spec.trafficPolicy.connectionPool.redis"
	cases := []struct {
		name   string
		edit   func(*RedisDestination)
		field  string
		reason string
	}{
		{"no host", func(d *RedisDestination) { d.Spec.Host = "" }, "spec.host", ReasonInvalid},
		{"mode", func(d *RedisDestination) { d.Redis().Mode, d.Redis().ReadPolicy = "SENTINEL", "" }, redis + ".mode", ReasonUnsupported},
		{"endpoint without port", func(d *RedisDestination) { d.Redis().DiscoveryEndpoints[1] = "redis-0" }, redis + ".discoveryEndpoints[1]", ReasonInvalid},
		{"endpoint port", func(d *RedisDestination) { d.Redis().DiscoveryEndpoints[0] = "10.0.0.1:70000" }, redis + ".discoveryEndpoints[0]", ReasonInvalid},
		{"replica reads need cluster", func(d *RedisDestination) { d.Redis().Mode = ModeProxy }, redis + ".readPolicy", ReasonInvalid},
		{"hash a cluster", func(d *RedisDestination) { d.Redis().HashByKey = true }, redis + ".hashByKey", ReasonInvalid},
		{"no password", func(d *RedisDestination) { d.Redis().Auth.Plain.Password = "" }, redis + ".auth.plain.password", ReasonInvalid},
		{"no auth", func(d *RedisDestination) { d.Redis().Auth.Plain = nil }, redis + ".auth", ReasonInvalid},
		{"keepalive", func(d *RedisDestination) { d.Pool().TCP.TCPKeepalive = &TCPKeepalive{Probes: 3} }, "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive", ReasonUnsupported},
		{"connect timeout", func(d *RedisDestination) { d.Pool().TCP.ConnectTimeout.Duration = 0 }, "spec.trafficPolicy.connectionPool.tcp.connectTimeout", ReasonInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := strict[RedisDestination](t, aerakiDestination)
			c.edit(d)
			errs := d.Validate()
			if len(errs) == 0 {
				t.Fatal("accepted")
			}
			if errs[0].Field != c.field || fielderrors.Reason(errs) != c.reason {
				t.Fatalf("got %s (%s), want field %s (%s)", fielderrors.Message(errs), fielderrors.Reason(errs), c.field, c.reason)
			}
		})
	}
}

// TestUnknownFieldRefused: the folder source decodes strictly, so a
// misspelt Aeraki field is an error, not a dropped setting.
func TestUnknownFieldRefused(t *testing.T) {
	bad := strings.Replace(aerakiService, "removePrefix", "removePrefx", 1)
	if err := yaml.UnmarshalStrict([]byte(bad), new(RedisService)); err == nil || !strings.Contains(err.Error(), "removePrefx") {
		t.Fatalf("err = %v", err)
	}
}
