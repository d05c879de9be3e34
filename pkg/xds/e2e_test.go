package xds_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
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
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
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
		Builder:  &controller.Builder{},
		Inputs:   func() (*controller.Inputs, error) { return controller.LoadDir(dir) },
		Push:     c.srv.Update,
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
	startClient(t, c.addr, "proxy-1", "demo", rec)

	testutil.Eventually(t, 5*time.Second, "the first config", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v1 })
	first, _ := rec.last()
	if len(first.Listeners) != 1 || len(first.Clusters) != 2 || len(first.Endpoints) != 2 || len(first.Routes) != 1 {
		t.Fatalf("first set: %d listeners, %d clusters, %d endpoints, %d routes", len(first.Listeners), len(first.Clusters), len(first.Endpoints), len(first.Routes))
	}
	if got := first.Listeners[0].GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 20880 {
		t.Fatalf("listener address %v", got)
	}
	versions := drainAcks(c, map[string]uint64{})

	start := time.Now()
	data, _ := os.ReadFile(filepath.Join(dir, "router-v1.yaml"))
	writeFile(t, filepath.Join(dir, "router-v1.yaml"), strings.Replace(string(data), "subset: v1", "subset: v2", 1))
	testutil.Eventually(t, 2*time.Second, "the route change", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v2 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("route change took %v, want under 1s", d)
	}
	versions = drainAcks(c, versions)

	// Endpoint-only change: a new v2 endpoint.
	data, _ = os.ReadFile(filepath.Join(dir, "mesh.yaml"))
	writeFile(t, filepath.Join(dir, "mesh.yaml"), strings.Replace(string(data), "endpoints: [{addresses: [127.0.0.1]}]\n---\napiVersion: networking", "endpoints: [{addresses: [127.0.0.1]}, {addresses: [127.0.0.2]}]\n---\napiVersion: networking", 1))
	var acked []string
	deadline := time.After(3 * time.Second)
	for len(acked) == 0 {
		select {
		case a := <-c.answers:
			acked = append(acked, a.typeURL)
			checkIncreasing(t, versions, a)
		case <-deadline:
			t.Fatal("no ACK after the endpoint change")
		}
	}
	// Give other types a chance to (wrongly) show up, bounded.
	quietUntil := time.After(300 * time.Millisecond)
collect:
	for {
		select {
		case a := <-c.answers:
			acked = append(acked, a.typeURL)
		case <-quietUntil:
			break collect
		}
	}
	for _, typ := range acked {
		if typ != config.EndpointType {
			t.Fatalf("an endpoint-only change sent %s", typ)
		}
	}
	last, _ := rec.last()
	if n := len(endpointsOf(last, v2)); n != 2 {
		t.Fatalf("v2 has %d endpoints, want 2", n)
	}
}

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

func checkIncreasing(t *testing.T, versions map[string]uint64, a answer) {
	t.Helper()
	v, err := strconv.ParseUint(a.version, 10, 64)
	if err != nil {
		t.Fatalf("version %q is not a number", a.version)
	}
	if v <= versions[a.typeURL] {
		t.Fatalf("%s version went from %d to %d", a.typeURL, versions[a.typeURL], v)
	}
	versions[a.typeURL] = v
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

// TestReconnect: the controller goes away; the proxy keeps its config and
// applies nothing; a new controller on the same address (with a changed
// folder) resyncs it.
func TestReconnect(t *testing.T) {
	dir := setupDir(t)
	c := startController(t, dir, "")
	rec := &recorder{}
	startClient(t, c.addr, "proxy-re", "demo", rec)
	testutil.Eventually(t, 5*time.Second, "the first config", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v1 })
	c.stop()
	_, applied := rec.last()

	data, _ := os.ReadFile(filepath.Join(dir, "router-v1.yaml"))
	writeFile(t, filepath.Join(dir, "router-v1.yaml"), strings.Replace(string(data), "subset: v1", "subset: v2", 1))
	if r, n := rec.last(); n != applied || sayHelloCluster(r) != v1 {
		t.Fatal("the proxy lost or changed its config while the controller was away")
	}
	c2 := startController(t, dir, c.addr)
	testutil.Eventually(t, 5*time.Second, "the resync", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v2 })
	testutil.Eventually(t, 2*time.Second, "the proxy to show up", func() bool { return len(c2.srv.Nodes()) == 1 })
	// Both routes now go to v2: the v1 cluster is gone.
	if r, _ := rec.last(); len(r.Listeners) != 1 || len(r.Clusters) != 1 || r.Clusters[0].GetName() != v2 {
		t.Fatalf("after resync: %d listeners, %d clusters", len(r.Listeners), len(r.Clusters))
	}
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
