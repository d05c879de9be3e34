package xds_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

// TestProxyOverEitherVariant runs a proxy from the controller over delta
// and over state of the world: the first config serves calls; an
// endpoint-only edit sends that service's endpoints (over delta, the one
// ClusterLoadAssignment that changed); a route the proxy refuses is
// NACKed with its error and calls keep their routes; with the controller
// away the proxy keeps serving, and a controller back on the same address
// (with a changed folder) resyncs it.
func TestProxyOverEitherVariant(t *testing.T) {
	for _, variant := range []struct {
		name  string
		delta bool
	}{{"sotw", false}, {"delta", true}} {
		t.Run(variant.name, func(t *testing.T) {
			dir, listen, router, v1, v2 := meshFolder(t)

			c := startController(t, dir, "")
			px := proxy.New(quiet)
			t.Cleanup(func() { _ = px.Shutdown(context.Background()) })
			rec := &recorder{reject: func(res config.Resources) error {
				for _, rc := range res.Routes {
					for _, r := range rc.GetRoutes() {
						if r.GetName() == "bad" {
							return errors.New(`route "bad": the proxy refuses it`)
						}
					}
				}
				return px.Apply(res)
			}}
			sent := &sentCounter{}
			startClientWith(t, client.Options{Address: c.addr, NodeID: "proxy-" + variant.name, Namespace: "demo", Delta: variant.delta,
				DialOptions: []grpc.DialOption{sent.DialOption()}}, rec)
			testutil.Eventually(t, 5*time.Second, "the first config", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v1 })
			addr := "127.0.0.1:" + listen
			if got := answers(t, addr); got != "hello rest" {
				t.Fatalf("sayHello and sayBye answered by %q, want hello rest", got)
			}

			drainAcks(c, map[string]uint64{})
			before := sent.resources(config.EndpointType)
			meshFile := filepath.Join(dir, "mesh.yaml")
			data, _ := os.ReadFile(meshFile)
			writeFile(t, meshFile, strings.Replace(string(data), "endpoints: [{addresses: [127.0.0.1]}]\n---\napiVersion: networking", "endpoints: [{addresses: [127.0.0.1]}, {addresses: [127.0.0.2]}]\n---\napiVersion: networking", 1))
			testutil.Eventually(t, 3*time.Second, "the endpoint change", func() bool { r, _ := rec.last(); return len(endpointsOf(r, v2)) == 2 })
			drainAcks(c, map[string]uint64{})
			want := 2 // both subsets' ClusterLoadAssignments
			if variant.delta {
				want = 1
			}
			if got := sent.resources(config.EndpointType) - before; got != want {
				t.Errorf("the endpoint change sent %d ClusterLoadAssignments, want %d", got, want)
			}

			_, applied := rec.last()
			routerFile := filepath.Join(dir, "router-v1.yaml")
			writeFile(t, routerFile, strings.Replace(string(router), "name: say-hello", "name: bad", 1))
			deadline := time.After(3 * time.Second)
		nack:
			for {
				select {
				case a := <-c.answers:
					if a.nack {
						if !strings.Contains(a.detail, `route "bad"`) {
							t.Fatalf("NACK %+v, want one naming the bad route", a)
						}
						break nack
					}
				case <-deadline:
					t.Fatal("no NACK of the bad route")
				}
			}
			if _, n := rec.last(); n != applied {
				t.Fatal("the refused set replaced the previous one")
			}
			if got := answers(t, addr); got != "hello rest" {
				t.Fatalf("after the refusal, sayHello and sayBye answered by %q, want hello rest", got)
			}
			writeFile(t, routerFile, string(router))
			testutil.Eventually(t, 3*time.Second, "the fixed config", func() bool { _, n := rec.last(); return n > applied })

			c.stop()
			_, applied = rec.last()
			writeFile(t, routerFile, strings.Replace(string(router), "subset: v1", "subset: v2", 1))
			testutil.Eventually(t, 5*time.Second, "a reconnection attempt", func() bool { return sent.streams() >= 2 })
			if got := answers(t, addr); got != "hello rest" {
				t.Fatalf("with the controller away, sayHello and sayBye answered by %q, want hello rest", got)
			}
			if _, n := rec.last(); n != applied {
				t.Fatal("the proxy changed its config while the controller was away")
			}
			c = startController(t, dir, c.addr)
			testutil.Eventually(t, 5*time.Second, "the resync", func() bool { r, _ := rec.last(); return sayHelloCluster(r) == v2 })
			if r, _ := rec.last(); len(r.Clusters) != 1 || r.Clusters[0].GetName() != v2 {
				t.Fatalf("after the resync: clusters %v", r.Clusters)
			}
			if got := answers(t, addr); got != "rest rest" {
				t.Fatalf("after the resync, sayHello and sayBye answered by %q, want rest rest", got)
			}
			if variant.delta {
				resumesWithVersions(t, c, dir, sent, rec, v2)
			}
		})
	}
}

// resumesWithVersions restarts the controller on an unchanged folder: the
// versions the proxy holds are those the controller would send, so nothing
// is resent, and an endpoint edit after the resync is the one resource the
// proxy receives.
func resumesWithVersions(t *testing.T, c *controllerProc, dir string, sent *sentCounter, rec *recorder, cluster string) {
	t.Helper()
	drainAcks(c, map[string]uint64{})
	c.stop()
	streams, total := sent.streams(), sent.total()
	c = startController(t, dir, c.addr)
	testutil.Eventually(t, 5*time.Second, "the reconnection", func() bool { return sent.streams() > streams })
	meshFile := filepath.Join(dir, "mesh.yaml")
	data, _ := os.ReadFile(meshFile)
	writeFile(t, meshFile, strings.Replace(string(data), "{addresses: [127.0.0.2]}", "{addresses: [127.0.0.3]}", 1))
	testutil.Eventually(t, 5*time.Second, "the endpoint edit", func() bool {
		r, _ := rec.last()
		return slices.Contains(endpointsOf(r, cluster), "127.0.0.3")
	})
	drainAcks(c, map[string]uint64{})
	if got := sent.total() - total; got != 1 {
		t.Errorf("after reconnecting to a controller with the same config and one endpoint edit, the proxy received %d resources, want the 1 edited", got)
	}
}

// sentCounter counts the resources a client receives, by type, over
// either variant, and the streams it opens.
type sentCounter struct {
	mu      sync.Mutex
	opened  int
	perType map[string]int
}

func (s *sentCounter) DialOption() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
		method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s.mu.Lock()
		s.opened++
		s.mu.Unlock()
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &countingStream{ClientStream: cs, s: s}, nil
	})
}

func (s *sentCounter) resources(typeURL string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perType[typeURL]
}

func (s *sentCounter) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, k := range s.perType {
		n += k
	}
	return n
}

func (s *sentCounter) streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

type countingStream struct {
	grpc.ClientStream
	s *sentCounter
}

func (c *countingStream) RecvMsg(m any) error {
	if err := c.ClientStream.RecvMsg(m); err != nil {
		return err
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.perType == nil {
		c.s.perType = map[string]int{}
	}
	switch m := m.(type) {
	case *discoveryv3.DiscoveryResponse:
		c.s.perType[m.GetTypeUrl()] += len(m.GetResources())
	case *discoveryv3.DeltaDiscoveryResponse:
		c.s.perType[m.GetTypeUrl()] += len(m.GetResources())
	}
	return nil
}
