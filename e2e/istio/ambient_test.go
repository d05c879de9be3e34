package istio

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"istio.io/istio/pkg/workloadapi"

	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// A stand-in ztunnel: a delta ADS client that asks istiod for what a node's
// ztunnel gets (workloads and services, as istio.workload.Address), and
// keeps the latest Address of each name. It only reads config.

// addressType is the type URL of ztunnel's address resources.
const addressType = "type.googleapis.com/istio.workload.Address"

type standInZtunnel struct {
	mu        sync.Mutex
	addresses map[string]*workloadapi.Address
	// err is why the stream ended, or the last response NACKed.
	err error
}

// startStandInZtunnel connects as ztunnel pod ns/pod (IP ip, ServiceAccount
// sa) to istiod's plaintext xDS and subscribes to all addresses (wildcard).
func startStandInZtunnel(t *testing.T, m *istiod, ns, pod, ip, sa string) *standInZtunnel {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE":       ns,
		"CLUSTER_ID":      clusterID,
		"ISTIO_VERSION":   sidecarIstioVersion,
		"SERVICE_ACCOUNT": sa,
		"INSTANCE_IPS":    ip,
	})
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: fmt.Sprintf("ztunnel~%s~%s.%s~%s.svc.cluster.local", ip, pod, ns, ns), Metadata: md}
	conn, err := grpc.NewClient(m.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatalf("stand-in ztunnel: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		cancel()
		conn.Close()
		t.Fatalf("stand-in ztunnel: delta ADS stream: %v", err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: addressType}); err != nil {
		cancel()
		conn.Close()
		t.Fatalf("stand-in ztunnel: subscribe: %v", err)
	}
	z := &standInZtunnel{addresses: map[string]*workloadapi.Address{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		z.run(ctx, stream)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close()
	})
	return z
}

// run applies each response (added or changed resources, removed names)
// and ACKs it, or NACKs it when a resource does not decode.
func (z *standInZtunnel) run(ctx context.Context, stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) {
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() == nil {
				z.setErr(fmt.Errorf("delta ADS stream ended: %w", err))
			}
			return
		}
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if err := z.apply(resp); err != nil {
			z.setErr(err)
			req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		}
		if err := stream.Send(req); err != nil {
			if ctx.Err() == nil {
				z.setErr(fmt.Errorf("delta ADS stream: ACK: %w", err))
			}
			return
		}
	}
}

func (z *standInZtunnel) setErr(err error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.err = err
}

func (z *standInZtunnel) apply(resp *discoveryv3.DeltaDiscoveryResponse) error {
	if resp.GetTypeUrl() != addressType {
		return fmt.Errorf("unexpected type %s", resp.GetTypeUrl())
	}
	set := map[string]*workloadapi.Address{}
	for _, r := range resp.GetResources() {
		a := &workloadapi.Address{}
		if err := r.GetResource().UnmarshalTo(a); err != nil {
			return fmt.Errorf("address %s: %w", r.GetName(), err)
		}
		set[r.GetName()] = a
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	for name, a := range set {
		z.addresses[name] = a
	}
	for _, name := range resp.GetRemovedResources() {
		delete(z.addresses, name)
	}
	return nil
}

// service returns the Service address ztunnel has for ns/hostname, or nil.
func (z *standInZtunnel) service(ns, hostname string) *workloadapi.Service {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.addresses[ns+"/"+hostname].GetService()
}

// waitService polls the Service address ns/hostname until ok accepts it.
func (z *standInZtunnel) waitService(t *testing.T, ns, hostname, what string, ok func(*workloadapi.Service) bool) *workloadapi.Service {
	t.Helper()
	var svc *workloadapi.Service
	start := time.Now()
	err := testutil.Poll(20*time.Second, what, func() (bool, error) {
		z.mu.Lock()
		err := z.err
		z.mu.Unlock()
		if err != nil {
			return true, err
		}
		svc = z.service(ns, hostname)
		return svc != nil && ok(svc), fmt.Errorf("ztunnel's %s/%s: %v", ns, hostname, svc)
	})
	if err == nil {
		z.mu.Lock()
		err = z.err
		z.mu.Unlock()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
	return svc
}

// TestAmbientWaypointSelection: a Gateway of class istio-waypoint whose
// address names the Rosetta waypoint's Service (and whose pods carry its
// gateway-name label) makes istiod send ztunnel, for a Service labelled
// istio.io/use-waypoint, a waypoint of that Service's hostname on HBONE
// port 15008; removing the label removes it.
func TestAmbientWaypointSelection(t *testing.T) {
	c, m := needMesh(t)
	const (
		ns  = "ambient-wp"
		gw  = "rosetta-waypoint"
		sa  = "rosetta-waypoint"
		svc = "greeter"
	)
	c.MustNamespace(t, ns)
	c.MustKubectl(t, "", "label", "namespace", ns, "istio.io/dataplane-mode=ambient", "--overwrite")
	waypointHost := gw + "." + ns + ".svc.cluster.local"

	// The Rosetta waypoint's pods and Service, as the chart would run
	// them: nothing dials them here, so documentation addresses do.
	c.ServiceAccount(t, ns, sa)
	wpLabels := map[string]string{"app": gw, "gateway.networking.k8s.io/gateway-name": gw}
	c.CreatePod(t, kubeenv.Pod{Namespace: ns, Name: gw + "-0", ServiceAccount: sa, IP: "192.0.2.40", Labels: wpLabels, Ports: []int{15008}})
	c.CreateService(t, kubeenv.Service{Namespace: ns, Name: gw, Selector: map[string]string{"app": gw},
		Ports: []kubeenv.Port{{Name: "mesh", Port: 15008}}})
	c.CreateEndpointSlice(t, kubeenv.EndpointSlice{Namespace: ns, Name: gw + "-0", Service: gw,
		Ports: []kubeenv.Port{{Name: "mesh", Port: 15008}}, Endpoints: []kubeenv.Endpoint{{Address: "192.0.2.40", Pod: gw + "-0"}}})

	c.Apply(t, fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: %s
  namespace: %s
spec:
  gatewayClassName: istio-waypoint
  addresses:
  - type: Hostname
    value: %s
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
`, gw, ns, waypointHost))
	var status string
	err := testutil.Poll(30*time.Second, "istiod's addresses in Gateway "+gw+"'s status", func() (bool, error) {
		out, err := c.Kubectl("", "get", "gateway", gw, "-n", ns, "-o", "jsonpath={.status.addresses}")
		status = out
		return err == nil && strings.Contains(out, "\"value\""), fmt.Errorf("%v: %s", err, out)
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, c.MustKubectl(t, "", "get", "gateway", gw, "-n", ns, "-o", "yaml"))
	}
	t.Logf("Gateway %s status addresses: %s", gw, status)

	// The application Service, with an endpoint so istiod has a workload.
	c.ServiceAccount(t, ns, svc)
	c.CreatePod(t, kubeenv.Pod{Namespace: ns, Name: svc + "-0", ServiceAccount: svc, IP: "192.0.2.41", Labels: map[string]string{"app": svc}, Ports: []int{20880}})
	c.CreateService(t, kubeenv.Service{Namespace: ns, Name: svc, Selector: map[string]string{"app": svc},
		Labels: map[string]string{"istio.io/use-waypoint": gw}, Ports: []kubeenv.Port{{Name: "tcp-dubbo", Port: 20880}}})
	c.CreateEndpointSlice(t, kubeenv.EndpointSlice{Namespace: ns, Name: svc + "-0", Service: svc,
		Ports: []kubeenv.Port{{Name: "tcp-dubbo", Port: 20880}}, Endpoints: []kubeenv.Endpoint{{Address: "192.0.2.41", Pod: svc + "-0"}}})

	z := startStandInZtunnel(t, m, "istio-system", "ztunnel-0", "192.0.2.42", "ztunnel")
	svcHost := svc + "." + ns + ".svc.cluster.local"
	wantWaypoint := func(s *workloadapi.Service) bool {
		w := s.GetWaypoint()
		return w.GetHostname().GetHostname() == waypointHost && w.GetHostname().GetNamespace() == ns && w.GetHboneMtlsPort() == 15008
	}
	got := z.waitService(t, ns, svcHost, "ztunnel's "+svc+" pointed at the Rosetta waypoint", wantWaypoint)
	t.Logf("ztunnel's %s: waypoint %v", svc, got.GetWaypoint())
	// The hostname resolves, in ztunnel's own config, to the Rosetta
	// waypoint Service's ClusterIP and HBONE port; that Service has no
	// waypoint of its own.
	clusterIP := netip.MustParseAddr(c.MustKubectl(t, "", "get", "service", gw, "-n", ns, "-o", "jsonpath={.spec.clusterIP}"))
	wp := z.service(ns, waypointHost)
	var vips []netip.Addr
	for _, a := range wp.GetAddresses() {
		if ip, ok := netip.AddrFromSlice(a.GetAddress()); ok {
			vips = append(vips, ip)
		}
	}
	if wp == nil || wp.GetWaypoint() != nil || !slices.Contains(vips, clusterIP) ||
		!slices.ContainsFunc(wp.GetPorts(), func(p *workloadapi.Port) bool { return p.GetServicePort() == 15008 }) {
		t.Errorf("ztunnel's %s: %v; want the waypoint Service (%s, port 15008), itself without a waypoint", waypointHost, wp, clusterIP)
	}

	c.MustKubectl(t, "", "label", "service", svc, "-n", ns, "istio.io/use-waypoint-")
	z.waitService(t, ns, svcHost, "ztunnel's "+svc+" without a waypoint", func(s *workloadapi.Service) bool {
		return s.GetWaypoint() == nil
	})
}
