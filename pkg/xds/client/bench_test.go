package client

import (
	"context"
	"fmt"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// benchServices are the mesh sizes the benchmarks run at; each service
// is a listener, a route configuration, an EDS cluster and its three
// endpoints (mesh).
var benchServices = []int{1000, 5000}

// BenchmarkOneClusterChange is what a change to one cluster of the mesh
// costs the proxy over each variant, against go-control-plane's server on
// a loopback port: the time from the server setting its snapshot to the
// proxy being handed the set with the change (ns/op), the part of it
// from the response's arrival (client-ns/op: decoding, merging, checking
// and assembling the set), and the encoded bytes and the resources of
// the responses the proxy receives for it.
func BenchmarkOneClusterChange(b *testing.B) {
	for _, n := range benchServices {
		for _, v := range variants {
			b.Run(fmt.Sprintf("services=%d/%s", n, v.name), func(b *testing.B) { benchmarkOneChange(b, n, v.delta) })
		}
	}
}

func benchmarkOneChange(b *testing.B, services int, delta bool) {
	cp := startControlPlane(b)
	snap, err := newTestSnapshot(mesh(b, services))
	if err != nil {
		b.Fatal(err)
	}
	cp.setSnapshot(b, snap)
	w := &wire{}
	timeouts, handed := benchClient(b, cp.addr, delta, w)
	<-timeouts // the first set
	for _, ok := cp.nextAnswer(b, 100*time.Millisecond); ok; _, ok = cp.nextAnswer(b, 100*time.Millisecond) {
	}
	base := snap.resources[config.ClusterType]["svc-7"].Resource.(*clusterv3.Cluster)
	var bytes, resources int
	var client time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		want := time.Duration(i+2) * time.Millisecond
		c := proto.Clone(base).(*clusterv3.Cluster)
		c.ConnectTimeout = durationpb.New(want)
		if snap, err = snap.replacing(config.ClusterType, c); err != nil {
			b.Fatal(err)
		}
		before := w.count()
		b.StartTimer()
		cp.setSnapshot(b, snap)
		for got := range timeouts {
			if got == want {
				break
			}
		}
		b.StopTimer()
		for a, ok := cp.nextAnswer(b, 5*time.Second); a.typeURL != config.ClusterType; a, ok = cp.nextAnswer(b, 5*time.Second) {
			if !ok {
				b.Fatal("no answer to the change")
			}
		}
		sent := w.since(before)
		for _, r := range sent {
			bytes += r.size
			resources += len(r.names)
		}
		client += handed.Load().(time.Time).Sub(sent[len(sent)-1].at)
	}
	b.ReportMetric(float64(client.Nanoseconds())/float64(b.N), "client-ns/op")
	b.ReportMetric(float64(bytes)/float64(b.N), "resp-bytes/op")
	b.ReportMetric(float64(resources)/float64(b.N), "resources/op")
}

// BenchmarkInitialSync is what a proxy's first config costs over each
// variant: the time from Run to the first set handed over, and the
// encoded bytes of the responses it took.
func BenchmarkInitialSync(b *testing.B) {
	for _, n := range benchServices {
		for _, v := range variants {
			b.Run(fmt.Sprintf("services=%d/%s", n, v.name), func(b *testing.B) {
				cp := startControlPlane(b)
				cp.set(b, mesh(b, n))
				var bytes int
				b.ResetTimer()
				for range b.N {
					w := &wire{}
					ctx, cancel := context.WithCancel(context.Background())
					timeouts, done := benchClientCtx(ctx, cp.addr, v.delta, w, &atomic.Value{})
					<-timeouts
					b.StopTimer()
					cancel()
					<-done
					for _, r := range w.since(0) {
						bytes += r.size
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(bytes)/float64(b.N), "resp-bytes/op")
			})
		}
	}
}

// benchClient runs Run until the benchmark ends; the channel has svc-7's
// connect timeout in each set handed over, and handed the time the last
// was.
func benchClient(b *testing.B, addr string, delta bool, w *wire) (timeouts <-chan time.Duration, handed *atomic.Value) {
	ctx, cancel := context.WithCancel(context.Background())
	handed = &atomic.Value{}
	timeouts, done := benchClientCtx(ctx, addr, delta, w, handed)
	b.Cleanup(func() { cancel(); <-done })
	return timeouts, handed
}

// benchClientCtx runs Run until ctx ends, then closes done.
func benchClientCtx(ctx context.Context, addr string, delta bool, w *wire, handed *atomic.Value) (timeouts <-chan time.Duration, done <-chan struct{}) {
	ch := make(chan time.Duration, 16)
	apply := func(res config.Resources) error {
		handed.Store(time.Now())
		select {
		case ch <- timeoutOf(res, "svc-7"):
		case <-ctx.Done():
		}
		return nil
	}
	opts := Options{Address: addr, NodeID: testNode, Delta: delta, Logger: quiet, DialOptions: []grpc.DialOption{w.DialOption()}}
	finished := make(chan struct{})
	go func() { defer close(finished); _ = Run(ctx, opts, apply) }()
	return ch, finished
}

// replacing is s with m in place of the resource of its type and name:
// the other types are shared, and only m is encoded and hashed.
func (s *testSnapshot) replacing(typeURL string, m proto.Message) (*testSnapshot, error) {
	b, err := cachev3.MarshalResource(m)
	if err != nil {
		return nil, err
	}
	out := &testSnapshot{resources: maps.Clone(s.resources), hashes: maps.Clone(s.hashes), typeHash: maps.Clone(s.typeHash), versions: map[string]string{}}
	out.resources[typeURL] = maps.Clone(s.resources[typeURL])
	out.hashes[typeURL] = maps.Clone(s.hashes[typeURL])
	out.resources[typeURL][nameOf(m)] = types.ResourceWithTTL{Resource: m}
	out.hashes[typeURL][nameOf(m)] = cachev3.HashResource(b)
	out.typeHash[typeURL] = out.hashType(typeURL)
	return out, nil
}
