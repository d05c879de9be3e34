package k8s

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	_ "github.com/rosetta-mesh/rosetta/protocols/standard/control" // the Redis kinds the controller reads
)

// TestManifestsDryRun: every rendered manifest passes the API server's own
// validation (kubectl apply --dry-run=server).
func TestManifestsDryRun(t *testing.T) {
	c := needCluster(t)
	c.MustNamespace(t, "demo")
	for _, f := range []string{"rosetta.yaml", "proxy-example.yaml", "lazy-fallback-example.yaml"} {
		c.MustKubectl(t, "", "apply", "--dry-run=server", "-f", filepath.Join(repoRoot, "manifests", "rendered", f))
	}
}

const routerHead = `apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: cel, namespace: default}
spec:
  hosts: [greeter.default.svc.cluster.local]
  routes:
`

// TestCRDValidation: the schema and CEL rules refuse what they can check,
// with a message naming the problem; a full Aeraki-style object passes.
func TestCRDValidation(t *testing.T) {
	c := needCluster(t)
	bad := []struct{ name, routes, want string }{
		{"weights", `  - route:
    - {destination: {host: a}, weight: 60}
    - {destination: {host: b}, weight: 60}
`, "must add up to 100"},
		{"two matchers", `  - match: {attributes: {method: {exact: a, prefix: b}}}
    route: [{destination: {host: a}}]
`, "at most one of exact, prefix and regex"},
		{"mirror percentage", `  - route: [{destination: {host: a}}]
    mirror: {host: b}
    mirrorPercentage: {value: 150}
`, "should be less than or equal to 100"},
		{"fault percentage", `  - route: [{destination: {host: a}}]
    fault: {abort: {status: unavailable, percentage: {value: -1}}}
`, "should be greater than or equal to 0"},
		{"abort status", `  - route: [{destination: {host: a}}]
    fault: {abort: {status: teapot}}
`, "Unsupported value"},
		{"retry on", `  - route: [{destination: {host: a}}]
    retries: {attempts: 1, retryOn: "5xx"}
`, "retryOn conditions are"},
		{"unknown field", `  - route: [{destination: {host: a}}]
    bogus: 1
`, "unknown field"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			out, err := c.Kubectl(routerHead+b.routes, "apply", "-f", "-")
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			if !strings.Contains(out, b.want) {
				t.Fatalf("refused without %q:\n%s", b.want, out)
			}
		})
	}
	aeraki := `apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: aeraki-fields, namespace: default}
spec:
  hosts: [org.apache.dubbo.samples.basic.api.demoservice]
  gateways: [mesh]
  exportTo: ["*"]
  routes:
  - name: v1
    match:
      attributes:
        interface: {exact: org.apache.dubbo.samples.basic.api.DemoService}
        method: {exact: sayHello}
        trace: {}
    route:
    - destination: {host: org.apache.dubbo.samples.basic.api.demoservice, subset: v1, port: {number: 20880}}
      weight: 20
    - destination: {host: org.apache.dubbo.samples.basic.api.demoservice, subset: v2}
      weight: 80
    mirror: {host: org.apache.dubbo.samples.basic.api.demoservice, subset: v3}
    mirrorPercentage: {value: 50}
    requestMutation: [{key: foo, value: bar}]
    responseMutation: [{key: foo1, value: bar1}]
  localRateLimit:
    tokenBucket: {maxTokens: 2, tokensPerFill: 2, fillInterval: 60s}
    conditions:
    - match: {attributes: {method: {exact: sayHello}}}
      tokenBucket: {maxTokens: 1, tokensPerFill: 1, fillInterval: 60s}
  globalRateLimit:
    match: {attributes: {method: {exact: sayHello}}}
    domain: production
    requestTimeout: 100ms
    denyOnFail: true
    rateLimitService: outbound|18081||rate-limit-server.meta-dubbo.svc.cluster.local
    descriptors: [{property: method, descriptorKey: method}]
`
	c.MustKubectl(t, aeraki, "apply", "-f", "-")
	stored := c.MustKubectl(t, "", "get", "metarouter", "aeraki-fields", "-n", "default", "-o", "json")
	c.MustKubectl(t, "", "delete", "metarouter", "aeraki-fields", "-n", "default")
	// Every field applied is stored as given: a field the schema does not
	// declare would be pruned without an error.
	if diffs := missingFields(specOf(t, []byte(aeraki)), specOf(t, []byte(stored)), "spec"); len(diffs) > 0 {
		t.Errorf("the stored MetaRouter lost or changed fields:\n%s", strings.Join(diffs, "\n"))
	}

	explain := c.MustKubectl(t, "", "explain", "metarouters.spec.routes.retries")
	for _, want := range []string{"attempts", "perTryTimeout", "retryOn", "connect-failure"} {
		if !strings.Contains(explain, want) {
			t.Errorf("kubectl explain does not describe %s:\n%s", want, explain)
		}
	}
	explain = c.MustKubectl(t, "", "explain", "applicationprotocols.spec")
	if !strings.Contains(explain, "codecOptions") || !strings.Contains(explain, "registered") {
		t.Errorf("kubectl explain applicationprotocols.spec:\n%s", explain)
	}
}

// canI is a question to the API server's authorizer and its answer.
type canI struct {
	verb, resource, ns string
	want               string
}

// TestRBACIsLeastPrivilege: the chart's ServiceAccount may read what the
// controller watches and patch MetaRouter status, and nothing more.
func TestRBACIsLeastPrivilege(t *testing.T) {
	c := needCluster(t)
	cases := []canI{
		{"watch", "services", "", "yes"},
		{"list", "endpointslices.discovery.k8s.io", "", "yes"},
		{"watch", "destinationrules.networking.istio.io", "", "yes"},
		{"list", "metarouters.metaprotocol.rosetta.dev", "", "yes"},
		{"patch", "metarouters.metaprotocol.rosetta.dev --subresource=status", "demo", "yes"},
		{"update", "metarouters.metaprotocol.rosetta.dev", "demo", "no"},
		{"delete", "metarouters.metaprotocol.rosetta.dev", "demo", "no"},
		{"get", "secrets", "demo", "no"},
		// Secrets are read by name where the chart's redisCredentials
		// value grants it (TestRedisSecretsByNameOnly), never listed.
		{"list", "secrets", "", "no"},
		{"watch", "secrets", "", "no"},
		{"get", "secrets", "", "no"},
		{"create", "leases.coordination.k8s.io", "rosetta-system", "yes"},
		{"create", "leases.coordination.k8s.io", "demo", "no"},
		{"update", "services", "demo", "no"},
	}
	checkCanI(t, c, cases)
}

// checkCanI asks the API server whether the chart's ServiceAccount may
// do each case's verb on its resource ("yes" or "no").
func checkCanI(t *testing.T, c *kubeenv.Cluster, cases []canI) {
	t.Helper()
	sa := "--as=system:serviceaccount:rosetta-system:rosetta-controller"
	for _, cs := range cases {
		args := append([]string{"auth", "can-i", cs.verb}, strings.Fields(cs.resource)...)
		args = append(args, sa)
		if cs.ns != "" {
			args = append(args, "-n", cs.ns)
		} else {
			args = append(args, "--all-namespaces")
		}
		out, _ := c.Kubectl("", args...)
		if got := strings.TrimSpace(out); got != cs.want {
			t.Errorf("can-i %s %s in %q = %q, want %q", cs.verb, cs.resource, cs.ns, got, cs.want)
		}
	}
}

// specOf is the spec of a YAML or JSON MetaRouter, as generic values.
func specOf(t *testing.T, doc []byte) map[string]any {
	t.Helper()
	var obj struct {
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		t.Fatal(err)
	}
	if len(obj.Spec) == 0 {
		t.Fatalf("no spec in:\n%s", doc)
	}
	return obj.Spec
}

// missingFields lists, by path, every value of want that got lacks or
// holds differently; fields only got has (defaults) are allowed.
func missingFields(want, got any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v, want an object", path, got)}
		}
		var out []string
		for _, k := range slices.Sorted(maps.Keys(w)) {
			if _, ok := g[k]; !ok {
				out = append(out, path+"."+k+": missing")
				continue
			}
			out = append(out, missingFields(w[k], g[k], path+"."+k)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: %v, want %v", path, got, want)}
		}
		var out []string
		for i := range w {
			out = append(out, missingFields(w[i], g[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	default:
		if !reflect.DeepEqual(want, got) {
			return []string{fmt.Sprintf("%s: %v, want %v", path, got, want)}
		}
		return nil
	}
}

// The controller's ServiceAccount, as the chart creates it.
const controllerSA = "system:serviceaccount:rosetta-system:rosetta-controller"

const credsNS = "creds-e2e"

// credsMesh has no Services: every proxy of the other tests would get
// their listeners. The credentials resolve without them.
const credsMesh = `apiVersion: v1
kind: Secret
metadata: {name: redis-auth, namespace: creds-e2e, labels: {redis.rosetta.dev/credentials: "true"}}
stringData: {password: p4ss, username: app}
---
apiVersion: v1
kind: Secret
metadata: {name: not-granted, namespace: creds-e2e, labels: {redis.rosetta.dev/credentials: "true"}}
stringData: {password: hidden}
---
apiVersion: redis.rosetta.dev/v1alpha1
kind: RedisDestination
metadata: {name: granted, namespace: creds-e2e}
spec:
  host: cache
  trafficPolicy: {connectionPool: {redis: {auth: {secret: {name: redis-auth}}}}}
---
apiVersion: redis.rosetta.dev/v1alpha1
kind: RedisDestination
metadata: {name: denied, namespace: creds-e2e}
spec:
  host: cache-b
  trafficPolicy: {connectionPool: {redis: {auth: {secret: {name: not-granted}}}}}
`

// TestRedisSecretsByNameOnly: with the Role the chart renders for
// redisCredentials, the controller's ServiceAccount can read the Secret
// it names and nothing else: listing or watching Secrets, in the
// namespace or the cluster, is forbidden, and so is reading another
// Secret. The controller's own Kubernetes source, as that ServiceAccount,
// resolves the Redis credential from it.
func TestRedisSecretsByNameOnly(t *testing.T) {
	c := needCluster(t)
	c.MustNamespace(t, credsNS)
	c.Apply(t, credsMesh)
	t.Cleanup(func() { _, _ = c.Kubectl("", "delete", "redisdestinations", "--all", "-n", credsNS) })
	c.Apply(t, redisCredentialRoles(t, credsNS, "redis-auth"))

	as := "--as=" + controllerSA
	// Raw requests, so each is exactly one verb: list, watch (even of the
	// granted Secret alone), get.
	nsSecrets := "/api/v1/namespaces/" + credsNS + "/secrets"
	forbidden := [][]string{
		{"get", "--raw", "/api/v1/secrets"},
		{"get", "--raw", "/api/v1/secrets?watch=true&timeoutSeconds=1"},
		{"get", "--raw", nsSecrets},
		{"get", "--raw", nsSecrets + "?watch=true&timeoutSeconds=1"},
		{"get", "--raw", nsSecrets + "?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dredis-auth"},
		{"get", "--raw", nsSecrets + "/not-granted"},
		{"get", "--raw", "/api/v1/namespaces/redis-e2e/secrets/cache-auth"},
	}
	for _, args := range forbidden {
		out, err := c.Kubectl("", append(args, as)...)
		if err == nil || !strings.Contains(out, "Forbidden") {
			t.Errorf("kubectl %s %s: %v, want Forbidden:\n%s", strings.Join(args, " "), as, err, out)
		}
	}
	out := c.MustKubectl(t, "", "get", "secret", "redis-auth", "-n", credsNS, "-o", "jsonpath={.data.password}", as)
	if out != base64.StdEncoding.EncodeToString([]byte("p4ss")) {
		t.Errorf("the granted Secret read as the controller: %q", out)
	}
	checkControllerResolvesCredentials(t, c.URL, c.AdminToken)
}

// checkControllerResolvesCredentials runs the controller's Kubernetes
// source as its ServiceAccount (impersonated by the admin) and builds an
// index from what it read: the granted Secret's credentials resolve, the
// other Secret is not read, and the status says so.
func checkControllerResolvesCredentials(t *testing.T, url, adminToken string) {
	t.Helper()
	cfg := &rest.Config{Host: url, BearerToken: adminToken,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Impersonate:     rest.ImpersonationConfig{UserName: controllerSA}}
	src, err := controller.NewKubeSource(cfg, func() {})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := src.Start(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := src.Inputs()
	if err != nil {
		t.Fatal(err)
	}
	var read []string
	for _, s := range in.Secrets {
		read = append(read, s.Namespace+"/"+s.Name+"="+string(s.Data["password"]))
	}
	if want := []string{credsNS + "/redis-auth=p4ss"}; !slices.Equal(read, want) {
		t.Errorf("the controller read Secrets %v, want %v", read, want)
	}
	b := &controller.Builder{Options: controller.Options{DomainSuffix: "cluster.local", RootNamespace: "istio-system"}}
	st := b.Build(in).ProtocolStatuses()
	for name, want := range map[string]string{"granted": "True", "denied": "False"} {
		conds := st["RedisDestination/"+credsNS+"/"+name].Conditions
		if len(conds) < 2 || string(conds[1].Status) != want {
			t.Errorf("RedisDestination %s: ResolvedRefs %+v, want %s", name, conds, want)
		}
	}
	if msg := st["RedisDestination/"+credsNS+"/denied"].Conditions; len(msg) < 2 || !strings.Contains(msg[1].Message, "no Secret "+credsNS+"/not-granted") {
		t.Errorf("the status of RedisDestination denied does not name the Secret: %+v", msg)
	}
}
