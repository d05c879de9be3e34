package xds_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

const (
	benchServices   = 1000
	benchNamespaces = 10
	benchProxies    = 100
)

// benchMesh is 1,000 Dubbo services with 3 endpoints each in 10
// namespaces, a MetaRouter for each, and a Sidecar per namespace scoping
// its proxies to their own namespace.
func benchMesh() *controller.Inputs {
	in := &controller.Inputs{}
	for i := 0; i < benchServices; i++ {
		ns := fmt.Sprintf("ns-%d", i%benchNamespaces)
		name := fmt.Sprintf("svc-%d", i)
		port := int32(20000 + i)
		in.Services = append(in.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "tcp-dubbo", Port: port}}},
		})
		ready := true
		pname := "tcp-dubbo"
		var eps []discoveryv1.Endpoint
		for e := 0; e < 3; e++ {
			eps = append(eps, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", i/250, i%250, e+1)}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
		}
		in.EndpointSlices = append(in.EndpointSlices, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port}},
			Endpoints:   eps,
		})
		in.MetaRouters = append(in.MetaRouters, benchRouter(ns, name, 0))
	}
	for n := 0; n < benchNamespaces; n++ {
		sc := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: fmt.Sprintf("ns-%d", n)}}
		sc.Spec.Egress = []*v1alpha3.IstioEgressListener{{Hosts: []string{"./*"}}}
		in.Sidecars = append(in.Sidecars, sc)
	}
	return in
}

func benchRouter(ns, name string, gen int) *v1alpha1.MetaRouter {
	method := "m" + strconv.Itoa(gen)
	host := name + "." + ns + ".svc.cluster.local"
	return &v1alpha1.MetaRouter{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: int64(gen + 1)},
		Spec: v1alpha1.MetaRouterSpec{Hosts: []string{host}, Routes: []v1alpha1.MetaRoute{{
			Name:  "r",
			Match: &v1alpha1.MetaRouteMatch{Attributes: map[string]v1alpha1.StringMatch{"method": {Exact: &method}}},
			Route: []v1alpha1.MetaRouteDestination{{Destination: v1alpha1.Destination{Host: host}}},
		}}},
	}
}

// BenchmarkControlPlane measures, for each MetaRouter write, the time
// until every proxy that uses it has applied the change, with 100 proxy
// clients connected over loopback gRPC. It reports p50/p99 of that time,
// the process RSS (controller and clients share it), CPU per write and
// the bytes each proxy received at start.
//
//	go test ./pkg/xds -run '^$' -bench ControlPlane -benchtime 200x
func BenchmarkControlPlane(b *testing.B) {
	in := benchMesh()
	var inMu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := xds.NewServer(ctx, xds.Options{Logger: quiet})
	pipe := &controller.Pipeline{
		Builder: &controller.Builder{},
		Inputs: func() (*controller.Inputs, error) {
			inMu.Lock()
			defer inMu.Unlock()
			cp := *in
			cp.MetaRouters = append([]*v1alpha1.MetaRouter(nil), in.MetaRouters...)
			return &cp, nil
		},
		Push:     srv.Update,
		MinDelay: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond, Log: quiet,
	}
	go pipe.Run(ctx)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		if err := srv.Serve(ctx, lis); err != nil {
			b.Error(err)
		}
	}()
	pipe.Changed()

	proxies := startBenchProxies(ctx, lis.Addr().String(), quiet)
	waitAll := func(listener, method string, ns int, within time.Duration) time.Duration {
		start := time.Now()
		for p, ps := range proxies {
			if p%benchNamespaces != ns {
				continue
			}
			for {
				ps.mu.Lock()
				got := ps.seen[listener]
				ps.mu.Unlock()
				if got == method {
					break
				}
				select {
				case <-ps.notify:
				case <-time.After(within):
					b.Fatalf("proxy-%d did not get %s=%s", p, listener, method)
				}
			}
		}
		return time.Since(start)
	}
	waitAll("svc-999.ns-9.svc.cluster.local_20999", "m0", 9, 60*time.Second)
	var initialBytes []int
	for _, ps := range proxies {
		ps.mu.Lock()
		initialBytes = append(initialBytes, ps.bytes)
		ps.mu.Unlock()
	}

	var lat []time.Duration
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		svc := (i * 7) % benchServices
		ns := svc % benchNamespaces
		name := fmt.Sprintf("svc-%d", svc)
		nsName := fmt.Sprintf("ns-%d", ns)
		method := "m" + strconv.Itoa(i+1)
		written := time.Now()
		inMu.Lock()
		in.MetaRouters[svc] = benchRouter(nsName, name, i+1)
		inMu.Unlock()
		pipe.Changed()
		waitAll(fmt.Sprintf("%s.%s.svc.cluster.local_%d", name, nsName, 20000+svc), method, ns, 10*time.Second)
		lat = append(lat, time.Since(written))
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Ints(initialBytes)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(rssMB(), "rss-MB")
	b.ReportMetric(cpu.Seconds()*1000/float64(b.N), "cpu-ms/write")
	b.ReportMetric(float64(initialBytes[len(initialBytes)/2]), "bytes/proxy")
}

func resourceBytes(r config.Resources) int {
	n := 0
	for _, l := range r.Listeners {
		n += protoSize(l)
	}
	for _, c := range r.Clusters {
		n += protoSize(c)
	}
	for _, e := range r.Endpoints {
		n += protoSize(e)
	}
	for _, rc := range r.Routes {
		n += protoSize(rc)
	}
	return n
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func protoSize(m interface{ ProtoReflect() protoreflect.Message }) int {
	return proto.Size(m)
}

// benchProxy is one proxy of a control-plane benchmark: it records, per
// route configuration, the method its route matches, and signals when its
// config changes.
type benchProxy struct {
	mu     sync.Mutex
	seen   map[string]string
	bytes  int
	notify chan struct{}
}

// startBenchProxies subscribes benchProxies xDS clients, spread over
// benchNamespaces namespaces, to the controller at addr.
func startBenchProxies(ctx context.Context, addr string, quiet *slog.Logger) []*benchProxy {
	proxies := make([]*benchProxy, benchProxies)
	for p := range proxies {
		ps := &benchProxy{seen: map[string]string{}, notify: make(chan struct{}, 1)}
		proxies[p] = ps
		go client.Run(ctx, client.Options{Address: addr, NodeID: fmt.Sprintf("proxy-%d", p),
			Namespace: fmt.Sprintf("ns-%d", p%benchNamespaces), Logger: quiet}, func(r config.Resources) error {
			ps.mu.Lock()
			for _, rc := range r.Routes {
				ps.seen[rc.GetName()] = rc.GetRoutes()[0].GetMatch().GetAttributes()[0].GetExact()
			}
			if ps.bytes == 0 {
				ps.bytes = resourceBytes(r)
			}
			ps.mu.Unlock()
			select {
			case ps.notify <- struct{}{}:
			default:
			}
			return nil
		})
	}
	return proxies
}
