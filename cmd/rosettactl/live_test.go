package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

// liveHost is the service the live tests route.
const liveHost = "greeter.demo.svc.cluster.local"

// liveConfig is a controller folder: a service with five providers, one
// per subset, and a MetaRouter whose routes test each kind of condition.
// %d are the service port and the providers' ports.
const liveConfig = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {name: tcp-dubbo, number: %d, protocol: TCP}
  endpoints:
  - {address: 127.0.0.1, ports: {tcp-dubbo: %d}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {tcp-dubbo: %d}, labels: {version: v2}}
  - {address: 127.0.0.1, ports: {tcp-dubbo: %d}, labels: {version: v3}}
  - {address: 127.0.0.1, ports: {tcp-dubbo: %d}, labels: {version: v4}}
  - {address: 127.0.0.1, ports: {tcp-dubbo: %d}, labels: {version: v5}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
  - {name: v4, labels: {version: v4}}
  - {name: v5, labels: {version: v5}}
---
apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  routes:
  - name: hello
    match: {attributes: {method: {exact: sayHello}}}
    route: [{destination: {host: greeter.demo.svc.cluster.local, subset: v1}}]
  - name: beta
    match: {attributes: {env: {exact: beta}}}
    route: [{destination: {host: greeter.demo.svc.cluster.local, subset: v2}}]
  - name: v2-api
    match: {attributes: {version: {regex: '2\..*'}}}
    route: [{destination: {host: greeter.demo.svc.cluster.local, subset: v3}}]
  - name: getters
    match: {attributes: {method: {prefix: get}}}
    route: [{destination: {host: greeter.demo.svc.cluster.local, subset: v4}}]
  - name: default
    route: [{destination: {host: greeter.demo.svc.cluster.local, subset: v5}}]
`

// live is a controller (the rosetta-controller binary, folder mode) and a
// proxy (the rosetta-proxy binary) it configures, with five providers.
type live struct {
	dir        string
	port       int    // the service port, where the proxy listens
	xds, debug string // the controller's addresses
	proxyAdmin string
	providers  map[string]string // provider name (v1...) to address
	proxyBin   string
}

func startLive(t *testing.T) *live {
	t.Helper()
	root := filepath.Join("..", "..")
	ctrlBin := testutil.GoBuild(t, root, "./cmd/rosetta-controller")
	l := &live{dir: t.TempDir(), providers: map[string]string{}, proxyBin: testutil.GoBuild(t, root, "./cmd/rosetta-proxy")}
	args := []any{0}
	for _, name := range []string{"v1", "v2", "v3", "v4", "v5"} {
		p, err := dubbopeer.Serve("127.0.0.1:0", name, func(_ context.Context, r *dubbopeer.Request) (any, error) {
			return name + ":" + r.Method, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		l.providers[name] = p.Addr()
		args = append(args, testutil.Port(t, p.Addr()))
	}
	l.port = testutil.FreePort(t)
	args[0] = l.port
	if err := os.WriteFile(filepath.Join(l.dir, "greeter.yaml"), fmt.Appendf(nil, liveConfig, args...), 0o644); err != nil {
		t.Fatal(err)
	}
	ctrl := testutil.StartT(t, testutil.Command{Name: "rosetta-controller", Path: ctrlBin, Args: []string{"--config-dir", l.dir,
		"--xds-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--debug-address", "127.0.0.1:0",
		"--debounce", "10ms", "--log-level", "info"}})
	var err error
	if l.xds, err = ctrl.LoggedAddr(60*time.Second, "serving", "xds"); err != nil {
		t.Fatal(err)
	}
	if l.debug, err = ctrl.LoggedAddr(time.Second, "serving", "debug"); err != nil {
		t.Fatal(err)
	}
	l.proxyAdmin = l.startProxy(t, "proxy-a")
	return l
}

// startProxy starts a rosetta-proxy of namespace demo as node id and
// returns its admin address once its listener is configured.
func (l *live) startProxy(t *testing.T, id string) string {
	t.Helper()
	px := testutil.StartT(t, testutil.Command{Name: id, Path: l.proxyBin, Args: []string{"--xds", l.xds, "--node-id", id,
		"--namespace", "demo", "--listen-address", "127.0.0.1", "--admin", "127.0.0.1:0", "--log-level", "info"}})
	admin, err := px.LoggedAddr(30*time.Second, "rosetta-proxy started", "admin")
	if err != nil {
		t.Fatal(err)
	}
	return admin
}

// status runs rosettactl status -o json against the controller.
func (l *live) status(t *testing.T) map[string]xds.ProxyStatus {
	t.Helper()
	var doc statusDoc
	if err := json.Unmarshal([]byte(mustRun(t, "status", "--controller", l.debug, "-o", "json")), &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]xds.ProxyStatus{}
	for _, p := range doc.Proxies {
		out[p.ID] = p
	}
	return out
}

func typeOf(p xds.ProxyStatus, typ string) xds.TypeStatus {
	for _, ts := range p.Types {
		if ts.Type == typ {
			return ts
		}
	}
	return xds.TypeStatus{}
}

// TestStatusLive: rosettactl status lists the proxies connected to a real
// controller with the version each acknowledged per type, and a proxy
// that refuses its config (its listener's port is taken by the first
// proxy) with the refused version and the proxy's reason.
func TestStatusLive(t *testing.T) {
	l := startLive(t)
	testutil.Eventually(t, 10*time.Second, "proxy-a acknowledges its listener", func() bool {
		ls := typeOf(l.status(t)["proxy-a"], "Listener")
		return ls.Acked != "" && ls.Acked == ls.Sent
	})
	l.startProxy(t, "proxy-b")
	var b xds.ProxyStatus
	testutil.Eventually(t, 10*time.Second, "proxy-b refuses its listener", func() bool {
		b = l.status(t)["proxy-b"]
		return typeOf(b, "Listener").Rejected != nil
	})
	rej := typeOf(b, "Listener")
	if !strings.Contains(rej.Rejected.Detail, "address already in use") || rej.Rejected.Version != rej.Sent || rej.Acked == rej.Sent {
		t.Errorf("proxy-b's listener: %+v, want the sent version refused for its port in use", rej)
	}
	a := l.status(t)["proxy-a"]
	for _, ts := range a.Types {
		if ts.Resources == 0 && ts.Acked == "" && ts.Rejected == nil {
			continue // a delta stream is sent nothing of an empty type
		}
		if ts.Rejected != nil || ts.Acked != ts.Sent {
			t.Errorf("proxy-a %s: %+v, want its sent version acknowledged", ts.Type, ts)
		}
	}
	if a.Namespace != "demo" {
		t.Errorf("proxy-a's namespace %q", a.Namespace)
	}
	out := mustRun(t, "status", "--controller", l.debug)
	if r := row(t, out, "proxy-a"); len(r) != 7 || r[6] != "ACK" {
		t.Errorf("proxy-a's first row %q:\n%s", r, out)
	}
	if !regexpMatch(`proxy-b +demo +Listener +1 +\d+ +\S+ +NACK \d+: listener "greeter.demo.svc.cluster.local_\d+": .*address already in use`, out) {
		t.Errorf("the table lacks proxy-b's NACK:\n%s", out)
	}
	if _, err := run(t, "status", "--controller", fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), "--timeout", "2s"); err == nil {
		t.Error("status of an address nobody serves did not fail")
	}
}

// TestExplainLive: for a dozen attribute combinations, real Dubbo calls
// through the real proxy land on the provider that explain names, and
// its three sources agree: the proxy's admin (its own router), the
// controller's config for the proxy's node, and the MetaRouter folder.
func TestExplainLive(t *testing.T) {
	l := startLive(t)
	addr := fmt.Sprintf("127.0.0.1:%d", l.port)
	testutil.Eventually(t, 10*time.Second, "the proxy's listener", func() bool {
		c, err := dubbopeer.Dial(addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	c, err := dubbopeer.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cases := []struct {
		method, version, env string
		route, provider      string
	}{
		{"sayHello", "1.0.0", "", "hello", "v1"},
		{"sayHello", "1.0.0", "beta", "hello", "v1"}, // the first route that matches wins
		{"sayHello", "2.0.0", "", "hello", "v1"},
		{"sayBye", "1.0.0", "beta", "beta", "v2"},
		{"getUser", "1.0.0", "beta", "beta", "v2"},
		{"sayBye", "2.1.0", "", "v2-api", "v3"},
		{"getUser", "2.0", "", "v2-api", "v3"},
		{"getUser", "1.0.0", "", "getters", "v4"},
		{"getUser", "1.0.0", "alpha", "getters", "v4"},
		{"sayBye", "1.0.0", "", "default", "v5"},
		{"howAreYou", "12.0", "", "default", "v5"}, // the regex is anchored
		{"GetUser", "1.0.0", "", "default", "v5"},  // the prefix is case-sensitive
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%s/%s/%s", tc.method, tc.version, tc.env)
		svc := dubbopeer.Service{Interface: "org.example.Greeter", Version: tc.version}
		var atts map[string]string
		if tc.env != "" {
			atts = map[string]string{"env": tc.env}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, replyAtts, err := c.Call(ctx, svc, tc.method, []any{"rosetta"}, atts)
		cancel()
		if err != nil {
			t.Fatalf("%s: call: %v", name, err)
		}
		landed := l.providers[dubbopeer.ProviderName(replyAtts)]
		if dubbopeer.ProviderName(replyAtts) != tc.provider {
			t.Errorf("%s: answered by %q, want %q", name, dubbopeer.ProviderName(replyAtts), tc.provider)
		}
		attrs := []string{"--listener", fmt.Sprint(l.port), "--attr", "interface=org.example.Greeter",
			"--attr", "method=" + tc.method, "--attr", "version=" + tc.version}
		if tc.env != "" {
			attrs = append(attrs, "--attr", "env="+tc.env)
		}
		for _, src := range [][]string{{"--admin", l.proxyAdmin}, {"--controller", l.debug, "--node", "proxy-a"}, {l.dir, "--namespace", "demo"}} {
			args := append(append([]string{"explain", "-o", "json"}, src...), attrs...)
			var e proxy.Explanation
			if err := json.Unmarshal([]byte(mustRun(t, args...)), &e); err != nil {
				t.Fatalf("%s %v: %v", name, src, err)
			}
			if e.Route != tc.route || len(e.Clusters) != 1 || e.Clusters[0].Endpoint != landed {
				t.Errorf("%s %v: explain says route %q, clusters %+v; the call took route %q to %s", name, src[0], e.Route, e.Clusters, tc.route, landed)
			}
			if e.Listener != fmt.Sprintf("%s_%d", liveHost, l.port) || e.Routes[len(e.Routes)-1].Route != e.Route {
				t.Errorf("%s %v: listener %q, verdicts %+v", name, src[0], e.Listener, e.Routes)
			}
		}
	}
	// The table says why each earlier route was passed over.
	out := mustRun(t, "explain", "--admin", l.proxyAdmin, "--listener", fmt.Sprint(l.port), "--attr", "method=getUser", "--attr", "version=1.0")
	for _, want := range []string{`hello (routes[0])    no match: method exact "sayHello" (the request has "getUser")`,
		`beta (routes[1])     no match: env exact "beta" (the request has none)`,
		`v2-api (routes[2])   no match: version regex "2\\..*" (the request has "1.0")`, `getters (routes[3])  matched`,
		"outbound|" + fmt.Sprint(l.port) + "|v4|" + liveHost + "  100%   ROUND_ROBIN  " + l.providers["v4"]} {
		if !strings.Contains(out, want) {
			t.Errorf("explain's table lacks %q:\n%s", want, out)
		}
	}
	for _, args := range [][]string{
		{"explain", "--admin", l.proxyAdmin, "--listener", "nope", "--attr", "method=x"},
		{"explain", "--controller", l.debug, "--node", "no-such-proxy", "--attr", "method=x"},
		{"explain", "--controller", l.debug, "--attr", "method=x"},
		{"explain", l.dir, "--admin", l.proxyAdmin},
		{"explain"},
	} {
		if out, err := run(t, args...); err == nil {
			t.Errorf("%v did not fail:\n%s", args, out)
		}
	}
}

func regexpMatch(re, s string) bool {
	return regexp.MustCompile(re).MatchString(s)
}
