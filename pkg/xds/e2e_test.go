package xds_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
	"github.com/rosetta-mesh/rosetta/pkg/xds/xdstest"
	_ "github.com/rosetta-mesh/rosetta/protocols/dubbo" // registers the codec
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type answer struct {
	node, typeURL, version, detail string
	nack                           bool
}

// controllerProc is the controller in folder mode, in process: the folder
// watcher, the debounced pipeline and the ADS server on a loopback port.
type controllerProc struct {
	srv     *xds.Server
	addr    string
	answers chan answer
	stop    func()
}

func startController(t *testing.T, dir, addr string) *controllerProc {
	t.Helper()
	return startControllerWith(t, dir, addr, xds.Options{})
}

// startControllerWith starts the controller with opts, to which it adds
// a quiet logger (unless opts has one) and the ACK and NACK recorders.
func startControllerWith(t *testing.T, dir, addr string, opts xds.Options) *controllerProc {
	t.Helper()
	return startControllerBuilding(t, dir, addr, opts, controller.Options{})
}

// startControllerBuilding is startControllerWith, building the index with
// build's options.
func startControllerBuilding(t *testing.T, dir, addr string, opts xds.Options, build controller.Options) *controllerProc {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &controllerProc{addr: lis.Addr().String(), answers: make(chan answer, 1024)}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	opts.OnAck = func(node, typeURL, version string) {
		select {
		case c.answers <- answer{node: node, typeURL: typeURL, version: version}:
		default: // a test that does not read them
		}
	}
	opts.OnNack = func(node, typeURL, version, detail string) {
		select {
		case c.answers <- answer{node: node, typeURL: typeURL, version: version, detail: detail, nack: true}:
		default:
		}
	}
	c.srv = xds.NewServer(ctx, opts)
	p := &controller.Pipeline{
		Builder:  &controller.Builder{Options: build},
		Inputs:   func() (*controller.Inputs, error) { return controller.LoadDir(dir) },
		Push:     c.srv.Update,
		Metrics:  controller.NewMetrics(opts.Registerer),
		MinDelay: 20 * time.Millisecond,
		MaxDelay: 200 * time.Millisecond,
		Log:      quiet,
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); p.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := controller.WatchDir(ctx, dir, p.Changed, quiet); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := c.srv.Serve(ctx, lis); err != nil {
			t.Error(err)
		}
	}()
	p.Changed() // the initial load
	c.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(c.stop)
	return c
}

// recorder is the proxy side: it records every set apply receives and
// refuses those reject says are bad.
type recorder struct {
	mu     sync.Mutex
	sets   []config.Resources
	reject func(config.Resources) error
}

func (r *recorder) apply(res config.Resources) error {
	if r.reject != nil {
		if err := r.reject(res); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, res)
	return nil
}

func (r *recorder) last() (config.Resources, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return config.Resources{}, 0
	}
	return r.sets[len(r.sets)-1], len(r.sets)
}

func startClient(t *testing.T, addr, id, ns string, rec *recorder) {
	t.Helper()
	startClientWith(t, client.Options{Address: addr, NodeID: id, Namespace: ns}, rec)
}

// startClientWith runs client.Run with opts, to which it adds the
// listen address, mode, a quiet logger and short backoffs, until the
// test ends.
func startClientWith(t *testing.T, opts client.Options, rec *recorder) {
	t.Helper()
	opts.ListenAddress, opts.Mode, opts.Logger = "127.0.0.1", "waypoint", quiet
	opts.InitialBackoff, opts.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- client.Run(ctx, opts, rec.apply)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("client.Run = %v", err)
		}
	})
}

// routeOf returns the cluster the first route of the only route
// configuration sends sayHello to.
func sayHelloCluster(res config.Resources) string {
	for _, rc := range res.Routes {
		for _, r := range rc.GetRoutes() {
			for _, a := range r.GetMatch().GetAttributes() {
				if a.GetName() == "method" && a.GetExact() == "sayHello" {
					return r.GetRoute().GetCluster()
				}
			}
		}
		if len(rc.GetRoutes()) > 0 {
			return rc.GetRoutes()[0].GetRoute().GetCluster()
		}
	}
	return ""
}

func setupDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"mesh.yaml", "router-v1.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, f), string(data))
	}
	return dir
}

// writeFile replaces a file atomically, as editors and kubectl-style
// tools do, so the watcher never reads half a file.
func writeFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const (
	v1 = "outbound|20880|v1|greeter.demo.svc.cluster.local"
	v2 = "outbound|20880|v2|greeter.demo.svc.cluster.local"
)

// TestFolderToProxy: the controller reads a folder, the proxy gets a
// complete set over ADS; editing the MetaRouter file moves sayHello to v2
// within a second; an endpoint-only edit sends endpoints only; versions
// only increase.
func TestFolderToProxy(t *testing.T) {
	dir := setupDir(t)
	c := startController(t, dir, "")
	rec := &recorder{}
	received := &xdstest.Received{}
	startClientWith(t, client.Options{Address: c.addr, NodeID: "proxy-1", Namespace: "demo",
		DialOptions: []grpc.DialOption{received.DialOption()}}, rec)

	testutil.Eventually(t, 5*time.Second, "the first config", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v1 })
	first, _ := rec.last()
	if len(first.Listeners) != 1 || len(first.Clusters) != 2 || len(first.Endpoints) != 2 || len(first.Routes) != 1 {
		t.Fatalf("first set: %d listeners, %d clusters, %d endpoints, %d routes", len(first.Listeners), len(first.Clusters), len(first.Endpoints), len(first.Routes))
	}
	if got := first.Listeners[0].GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 20880 {
		t.Fatalf("listener address %v", got)
	}

	start := time.Now()
	data, _ := os.ReadFile(filepath.Join(dir, "router-v1.yaml"))
	writeFile(t, filepath.Join(dir, "router-v1.yaml"), strings.Replace(string(data), "subset: v1", "subset: v2", 1))
	testutil.Eventually(t, 2*time.Second, "the route change", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v2 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("route change took %v, want under 1s", d)
	}

	// Endpoint-only change: a new v2 endpoint. Its version is that of the
	// endpoints the proxy received last once it holds them; every
	// response of the earlier changes has a smaller one.
	mesh := filepath.Join(dir, "mesh.yaml")
	data, _ = os.ReadFile(mesh)
	writeFile(t, mesh, strings.Replace(string(data), "endpoints: [{addresses: [127.0.0.1]}]\n---\napiVersion: networking", "endpoints: [{addresses: [127.0.0.1]}, {addresses: [127.0.0.2]}]\n---\napiVersion: networking", 1))
	testutil.Eventually(t, 3*time.Second, "the endpoint change", func() bool { r, _ := rec.last(); return len(endpointsOf(r, v2)) == 2 })
	endpointsOnly := received.Latest(config.EndpointType)

	// A change of all four types: a second service. The controller keeps
	// one request per type open, so a listener, cluster or route set that
	// the endpoint-only change (wrongly) sent arrives before this one's.
	data, _ = os.ReadFile(mesh)
	writeFile(t, mesh, string(data)+farewellMesh)
	testutil.Eventually(t, 3*time.Second, "the second service", func() bool {
		r, _ := rec.last()
		return len(r.Listeners) == 2 && len(r.Clusters) == 2 && len(r.Routes) == 2 && len(endpointsOf(r, farewell)) == 1
	})
	all := received.Latest(config.ListenerType)
	if all <= endpointsOnly {
		t.Fatalf("the second change has version %d, the endpoint-only one %d", all, endpointsOnly)
	}
	for typ, want := range map[string][]uint64{
		config.ListenerType: {all}, config.ClusterType: {all}, config.RouteType: {all},
		config.EndpointType: {endpointsOnly, all},
	} {
		if got := received.Since(typ, endpointsOnly); !slices.Equal(got, want) {
			t.Errorf("%s: the proxy received versions %v since the endpoint-only change, want %v", typ, got, want)
		}
	}
	for _, typ := range xds.TypeURLs {
		if vs := received.Since(typ, 0); !slices.IsSorted(vs) || len(slices.Compact(slices.Clone(vs))) != len(vs) {
			t.Errorf("%s versions do not only increase: %v", typ, vs)
		}
	}
}

// farewellMesh adds a second service to mesh.yaml: a listener, a
// cluster, a route configuration and endpoints.
const farewellMesh = `---
apiVersion: v1
kind: Service
metadata: {name: farewell, namespace: demo}
spec:
  ports: [{name: tcp-dubbo, port: 20890}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: farewell
  namespace: demo
  labels: {kubernetes.io/service-name: farewell}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 20891}]
endpoints: [{addresses: [127.0.0.1]}]
`

const farewell = "outbound|20890||farewell.demo.svc.cluster.local"

func endpointsOf(res config.Resources, cluster string) []string {
	var out []string
	for _, cla := range res.Endpoints {
		if cla.GetClusterName() == cluster {
			for _, le := range cla.GetEndpoints() {
				for _, e := range le.GetLbEndpoints() {
					out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
				}
			}
		}
	}
	return out
}

func drainAcks(c *controllerProc, versions map[string]uint64) map[string]uint64 {
	for {
		select {
		case a := <-c.answers:
			v, _ := strconv.ParseUint(a.version, 10, 64)
			if v > versions[a.typeURL] {
				versions[a.typeURL] = v
			}
		case <-time.After(100 * time.Millisecond):
			return versions
		}
	}
}

// TestNack: the proxy refuses a set; the controller sees a NACK with the
// proxy's message, the proxy keeps the previous set, and a fixed config
// is accepted again.
func TestNack(t *testing.T) {
	dir := setupDir(t)
	c := startController(t, dir, "")
	rec := &recorder{reject: func(res config.Resources) error {
		for _, rc := range res.Routes {
			for _, r := range rc.GetRoutes() {
				if r.GetName() == "bad" {
					return errors.New(`route "bad": the proxy refuses it`)
				}
			}
		}
		return nil
	}}
	startClient(t, c.addr, "proxy-nack", "demo", rec)
	testutil.Eventually(t, 5*time.Second, "the first config", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v1 })
	drainAcks(c, map[string]uint64{})
	_, applied := rec.last()

	data, _ := os.ReadFile(filepath.Join(dir, "router-v1.yaml"))
	bad := strings.Replace(string(data), "name: say-hello", "name: bad", 1)
	writeFile(t, filepath.Join(dir, "router-v1.yaml"), strings.Replace(bad, "subset: v1", "subset: v2", 1))
	// The change touches clusters, endpoints and routes; the set is
	// refused as a whole, so each of them is NACKed.
	nacked := map[string]bool{}
	deadline := time.After(3 * time.Second)
	for !nacked[config.RouteType] {
		select {
		case a := <-c.answers:
			if !a.nack || !strings.Contains(a.detail, `route "bad"`) {
				t.Fatalf("got %+v, want a NACK naming the bad route", a)
			}
			nacked[a.typeURL] = true
		case <-deadline:
			t.Fatalf("no NACK of the routes (got %v)", nacked)
		}
	}
	if r, n := rec.last(); n != applied || sayHelloCluster(r) != v1 {
		t.Fatalf("the refused set replaced the previous one")
	}
	// The refused version is not sent again and again.
	extra := 0
	settle := time.After(500 * time.Millisecond)
wait:
	for {
		select {
		case a := <-c.answers:
			if a.nack && a.typeURL == config.RouteType {
				extra++
			}
		case <-settle:
			break wait
		}
	}
	if extra > 0 {
		t.Fatalf("the refused routes were resent %d more times", extra)
	}
	writeFile(t, filepath.Join(dir, "router-v1.yaml"), strings.Replace(string(data), "subset: v1", "subset: v2", 1))
	testutil.Eventually(t, 3*time.Second, "the fixed config", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v2 })
	// The clusters were refused with the bad routes and not sent again
	// (they did not change); the fixed set still has the controller's
	// clusters, not the ones the proxy last accepted.
	if r, _ := rec.last(); len(r.Clusters) != 1 || r.Clusters[0].GetName() != v2 {
		t.Fatalf("clusters after the fix: %v", r.Clusters)
	}
}

// TestReconnect: the controller goes away; the proxy keeps its config
// (new connections through it reach the providers its last routes name)
// and applies nothing; a new controller on the same address (with a
// changed folder) resyncs it.
func TestReconnect(t *testing.T) {
	dir, listen, _, v1, v2 := meshFolder(t)

	c := startController(t, dir, "")
	px := proxy.New(quiet)
	t.Cleanup(func() { _ = px.Shutdown(context.Background()) })
	rec := &recorder{reject: px.Apply} // records what the proxy accepted
	received := &xdstest.Received{}
	startClientWith(t, client.Options{Address: c.addr, NodeID: "proxy-re", Namespace: "demo",
		DialOptions: []grpc.DialOption{received.DialOption()}}, rec)
	testutil.Eventually(t, 5*time.Second, "the first config", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v1 })
	addr := "127.0.0.1:" + listen
	if got := answers(t, addr); got != "hello rest" {
		t.Fatalf("sayHello and sayBye answered by %q, want hello rest", got)
	}

	c.stop()
	_, applied := rec.last()
	data, _ := os.ReadFile(filepath.Join(dir, "router-v1.yaml"))
	writeFile(t, filepath.Join(dir, "router-v1.yaml"), strings.Replace(string(data), "subset: v1", "subset: v2", 1))
	// The client has seen its stream end and tried to open another.
	testutil.Eventually(t, 5*time.Second, "a reconnection attempt", func() bool { return received.Streams() >= 2 })
	if got := answers(t, addr); got != "hello rest" {
		t.Fatalf("with the controller away, sayHello and sayBye answered by %q, want hello rest", got)
	}
	if r, n := rec.last(); n != applied || sayHelloCluster(r) != v1 {
		t.Fatal("the proxy changed its config while the controller was away")
	}

	c2 := startController(t, dir, c.addr)
	testutil.Eventually(t, 5*time.Second, "the resync", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v2 })
	testutil.Eventually(t, 2*time.Second, "the proxy to show up", func() bool { return len(c2.srv.Nodes()) == 1 })
	// Both routes now go to v2: the v1 cluster is gone.
	if r, _ := rec.last(); len(r.Listeners) != 1 || len(r.Clusters) != 1 || r.Clusters[0].GetName() != v2 {
		t.Fatalf("after resync: %d listeners, %d clusters", len(r.Listeners), len(r.Clusters))
	}
	if got := answers(t, addr); got != "rest rest" {
		t.Fatalf("after resync, sayHello and sayBye answered by %q, want rest rest", got)
	}
}

// meshFolder writes testdata's mesh.yaml and router-v1.yaml to a new
// folder, the listener on a free port and the subsets on two providers
// that answer "hello" and "rest". It returns the folder, the listener's
// port, router-v1.yaml's text and the subsets' cluster names on that port.
// The Service port names the listener and its clusters, so it is in the
// folder before the proxy binds it.
func meshFolder(t *testing.T) (dir, listen, router, v1Cluster, v2Cluster string) {
	t.Helper()
	hello, rest := provider(t, "hello"), provider(t, "rest")
	listen = strconv.Itoa(testutil.FreePort(t))
	dir = t.TempDir()
	mesh, err := os.ReadFile(filepath.Join("testdata", "mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ports := strings.NewReplacer("20880", listen, "20881", portOf(t, hello.Addr()), "20882", portOf(t, rest.Addr()))
	writeFile(t, filepath.Join(dir, "mesh.yaml"), ports.Replace(string(mesh)))
	r, err := os.ReadFile(filepath.Join("testdata", "router-v1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "router-v1.yaml"), string(r))
	return dir, listen, string(r), ports.Replace(v1), ports.Replace(v2)
}

// provider is a Dubbo provider on a loopback port that answers every call
// with its name.
func provider(t *testing.T, name string) *dubbopeer.Provider {
	t.Helper()
	p, err := dubbopeer.Serve("127.0.0.1:0", name, func(context.Context, *dubbopeer.Request) (any, error) { return name, nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// answers calls sayHello, then sayBye, on a new connection to the proxy
// at addr and returns the names of the providers that answered, or the
// error of the first call that failed.
func answers(t *testing.T, addr string) string {
	t.Helper()
	c, err := dubbopeer.Dial(addr)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var names []string
	for _, method := range []string{"sayHello", "sayBye"} {
		got, _, err := c.Call(ctx, dubbopeer.Service{Interface: "org.example.Greeter"}, method, []any{"x"}, nil)
		if err != nil {
			return method + ": " + err.Error()
		}
		names = append(names, fmt.Sprint(got))
	}
	return strings.Join(names, " ")
}

// TestDelta drives the delta protocol with a raw client: a wildcard
// subscription gets every resource; an endpoint change sends only that
// ClusterLoadAssignment; a removed subset is reported as removed.
func TestDelta(t *testing.T) {
	dir := setupDir(t)
	c := startController(t, dir, "")
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"namespace": "demo"})
	node := &corev3.Node{Id: "delta-1", Metadata: md}
	for i, typ := range xds.TypeURLs {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string][]string{}
	// This mesh has no secrets, and delta sends nothing for a type
	// without resources: every other type answers.
	for len(got) < len(xds.TypeURLs)-1 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetResources() {
			got[resp.GetTypeUrl()] = append(got[resp.GetTypeUrl()], r.GetName())
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	if len(got[config.ClusterType]) != 2 || len(got[config.ListenerType]) != 1 || len(got[config.RouteType]) != 1 || len(got[config.EndpointType]) != 2 {
		t.Fatalf("initial delta: %v", got)
	}

	data, _ := os.ReadFile(filepath.Join(dir, "mesh.yaml"))
	writeFile(t, filepath.Join(dir, "mesh.yaml"), strings.Replace(string(data), "endpoints: [{addresses: [127.0.0.1]}]\n---\napiVersion: networking", "endpoints: [{addresses: [127.0.0.3]}]\n---\napiVersion: networking", 1))
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTypeUrl() != config.EndpointType || len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != v2 {
		t.Fatalf("endpoint change sent %s %d resources", resp.GetTypeUrl(), len(resp.GetResources()))
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	// Route everything to v1: the v2 cluster and its endpoints go away.
	writeFile(t, filepath.Join(dir, "router-v1.yaml"), `apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  routes:
  - route: [{destination: {host: greeter, subset: v1}}]
`)
	removed := map[string][]string{}
	for len(removed[config.ClusterType]) == 0 || len(removed[config.EndpointType]) == 0 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		removed[resp.GetTypeUrl()] = append(removed[resp.GetTypeUrl()], resp.GetRemovedResources()...)
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	if removed[config.ClusterType][0] != v2 || removed[config.EndpointType][0] != v2 {
		t.Fatalf("removed: %v", removed)
	}
}

// TestSotWAndDeltaProxiesAreToldApart: go-control-plane numbers
// state-of-the-world and delta streams apart, each from 1. A proxy of
// each kind connected to one controller keeps its own stream: after an
// edit, each acknowledges the new routes under its own node id, and both
// are connected.
func TestSotWAndDeltaProxiesAreToldApart(t *testing.T) {
	dir := setupDir(t)
	c := startController(t, dir, "")
	sotw, delta := &recorder{}, &recorder{}
	startClient(t, c.addr, "sotw", "demo", sotw)
	testutil.Eventually(t, 5*time.Second, "sotw's config", func() bool { r, _ := sotw.last(); return sayHelloCluster(r) == v1 })
	startClientWith(t, client.Options{Address: c.addr, NodeID: "delta", Namespace: "demo", Delta: true}, delta)
	testutil.Eventually(t, 5*time.Second, "delta's config", func() bool { r, _ := delta.last(); return sayHelloCluster(r) == v1 })
	drainAcks(c, map[string]uint64{})

	data, _ := os.ReadFile(filepath.Join(dir, "router-v1.yaml"))
	writeFile(t, filepath.Join(dir, "router-v1.yaml"), strings.ReplaceAll(string(data), "subset: v1", "subset: v2"))
	acked := map[string]bool{}
	deadline := time.After(5 * time.Second)
	for !acked["sotw"] || !acked["delta"] {
		select {
		case a := <-c.answers:
			if !a.nack && a.typeURL == config.RouteType {
				acked[a.node] = true
			}
		case <-deadline:
			t.Fatalf("routes acknowledged by %v after an edit, want sotw and delta", acked)
		}
	}
	if got := c.srv.Nodes(); !slices.Equal(got, []string{"delta", "sotw"}) {
		t.Errorf("connected %v, want delta and sotw", got)
	}
}
