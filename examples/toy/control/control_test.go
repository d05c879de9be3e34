package control_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	_ "github.com/rosetta-mesh/rosetta/examples/toy/control" // registers the toy translator
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

// toyMesh is a toy service of two providers (versions v1 and v2) behind
// a listener port, and a ToyRoute that sends method hello to v2.
const toyMesh = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: toy, number: %d, protocol: TCP}]
  endpoints:
  - {address: 127.0.0.1, ports: {toy: %d}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {toy: %d}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: toy.example.dev/v1alpha1
kind: ToyRoute
metadata: {name: hello-v2, namespace: demo, generation: 1}
spec: {host: greeter, method: hello, subset: v2}
`

const host = "greeter.demo.svc.cluster.local"

// provider answers every call with its name.
func provider(t *testing.T, name string) *toy.Server {
	t.Helper()
	s, err := toy.Serve("127.0.0.1:0", func(*toy.Request) *toy.Response {
		return &toy.Response{Body: []byte(name)}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// meshDir writes toyMesh, with the listener's and providers' ports, to a
// folder of the controller's folder mode.
func meshDir(t *testing.T, port int, v1, v2 *toy.Server) string {
	t.Helper()
	dir := t.TempDir()
	doc := fmt.Sprintf(toyMesh, port, testutil.Port(t, v1.Addr()), testutil.Port(t, v2.Addr()))
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestToyRouteEndToEnd: a protocol that brings its own kind (ToyRoute,
// registered by this folder's translator and known nowhere else) drives
// a route through the unchanged controller: its YAML in the folder source
// becomes the route configuration of the toy listener and the ToyRoute's
// status; served over xDS to an in-process proxy, real toy calls of method
// hello reach provider v2 only, and other methods reach the service.
func TestToyRouteEndToEnd(t *testing.T) {
	v1, v2 := provider(t, "v1"), provider(t, "v2")
	port := testutil.FreePort(t)
	dir := meshDir(t, port, v1, v2)

	// YAML in, route configuration and status out.
	in, err := controller.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Unused) > 0 {
		t.Fatalf("the controller did not use %v", in.Unused)
	}
	ix := (&controller.Builder{}).Build(in)
	res := ix.Generate(&controller.Proxy{ID: "toy-proxy", Namespace: "demo"})
	hello := controllertest.Route(t, res, uint32(port), map[string]string{"method": "hello"})
	if got, want := hello.GetRoute().GetCluster(), controller.ClusterName(host, uint32(port), "v2"); got != want {
		t.Fatalf("method hello routes to %q, want %q", got, want)
	}
	other := controllertest.Route(t, res, uint32(port), map[string]string{"method": "bye"})
	if got, want := other.GetRoute().GetCluster(), controller.ClusterName(host, uint32(port), ""); got != want {
		t.Fatalf("method bye routes to %q, want %q", got, want)
	}
	if err := proxy.Validate(*res); err != nil {
		t.Fatalf("the proxy refuses the resources: %v", err)
	}
	st := ix.ProtocolStatuses()["ToyRoute/demo/hello-v2"]
	if len(st.Conditions) != 2 || st.Conditions[0].Status != "True" || st.Conditions[1].Status != "True" {
		t.Fatalf("ToyRoute status %+v", st)
	}

	// Real calls through a proxy the controller configures over xDS.
	addr := servedListener(t, dir, port)
	c, err := toy.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		if got := call(t, c, "hello"); got != "v2" {
			t.Fatalf("call %d of hello answered by %s, want v2", i, got)
		}
		seen[call(t, c, "bye")]++
	}
	if seen["v1"] == 0 || seen["v2"] == 0 {
		t.Errorf("calls of bye reached %v, want both providers", seen)
	}
}

// servedListener runs the controller's folder pipeline over dir and an
// xDS server, and a proxy that takes its config from it; it returns the
// address of the toy listener once the proxy serves it.
func servedListener(t *testing.T, dir string, port int) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := xds.NewServer(ctx, xds.Options{Logger: log})
	xdsLis := testutil.Listen(t)
	go func() { _ = srv.Serve(ctx, xdsLis) }()
	pipe := &controller.Pipeline{Push: srv.Update, Log: log, MinDelay: 10 * time.Millisecond}
	go func() { _ = pipe.RunDir(ctx, dir) }()

	px := proxy.New(log)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = px.Shutdown(sctx)
	})
	opts := client.Options{Address: xdsLis.Addr().String(), NodeID: "toy-proxy", Namespace: "demo", ListenAddress: "127.0.0.1", Logger: log}
	go func() { _ = client.Run(ctx, opts, px.Apply) }()
	listener := controller.ListenerName(host, uint32(port))
	var addr string
	testutil.Eventually(t, 10*time.Second, "the proxy's toy listener "+listener, func() bool {
		var ok bool
		addr, ok = px.Addr(listener)
		return ok
	})
	return addr
}

// call makes a toy call of method and returns the provider that answered.
func call(t *testing.T, c *toy.Client, method string) string {
	t.Helper()
	resp, err := c.Call(map[string]string{"method": method}, []byte("hi"))
	if err == nil {
		err = resp.Err()
	}
	if err != nil {
		t.Fatalf("call of %s: %v", method, err)
	}
	return strings.TrimSpace(string(resp.Body))
}
