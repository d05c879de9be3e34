package proxy_test

import (
	"context"
	"net"
	"sync"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// mtlsRLS is a rate limit service behind Istio mTLS that records the
// callers' SPIFFE IDs.
type mtlsRLS struct {
	fakeRLS
	mu      sync.Mutex
	callers []string
}

func (m *mtlsRLS) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			for _, u := range info.State.PeerCertificates[0].URIs {
				m.mu.Lock()
				m.callers = append(m.callers, u.String())
				m.mu.Unlock()
			}
		}
	}
	return m.fakeRLS.ShouldRateLimit(ctx, req)
}

func startMTLSRLS(t *testing.T, w *identity.Workload) (*mtlsRLS, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mtlsRLS{fakeRLS: fakeRLS{release: make(chan struct{})}}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(identity.ServerConfig(w))))
	rlsv3.RegisterRateLimitServiceServer(s, m)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return m, ln.Addr().String()
}

// istioMutual gives a cluster Istio mTLS on every endpoint, verifying san,
// as the controller does for a DestinationRule's ISTIO_MUTUAL.
func istioMutual(c obj, san string) obj {
	c["transport_socket"] = obj{"name": "envoy.transport_sockets.tls", "typed_config": obj{
		"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
		"sni":   "outbound_.8081_._.ratelimit.infra.svc.cluster.local",
		"common_tls_context": obj{
			"alpn_protocols":                     []string{"istio"},
			"tls_certificate_sds_secret_configs": []obj{{"name": "default"}},
			"combined_validation_context": obj{
				"default_validation_context":           obj{"match_typed_subject_alt_names": []obj{{"san_type": "URI", "matcher": obj{"exact": san}}}},
				"validation_context_sds_secret_config": obj{"name": "ROOTCA"},
			},
		},
	}}
	return c
}

// TestGlobalRateLimitOverMTLS: the proxy calls a rate limit service whose
// cluster has Istio mTLS over mTLS, with its own workload certificate, and
// the service's answers decide (a plaintext call would fail the handshake,
// and deny_on_fail would refuse every request); a service presenting
// another identity than the cluster's is not trusted.
func TestGlobalRateLimitOverMTLS(t *testing.T) {
	const rlsID = "spiffe://cluster.local/ns/infra/sa/ratelimit"
	ca := identitytest.NewCA("mesh")
	rls, rlsAddr := startMTLSRLS(t, workload(t, ca, rlsID))
	impostor, impostorAddr := startMTLSRLS(t, workload(t, ca, strangerID))
	up, _ := named(t, "up")
	limit := func(cluster string) obj {
		return obj{"cluster": "up", "global_rate_limit": obj{
			"domain": "d", "cluster": cluster, "timeout": "2s", "deny_on_fail": true,
			"descriptors": []obj{{"key": "user", "attribute": "user"}},
		}}
	}
	p := proxytest.StartWithIdentity(t, configJSON(t, []obj{listener("l", "r", nil)}, []obj{routeConfig("r",
		route("impostor", match("route", "impostor"), limit("impostor")),
		route("rls", nil, limit("rls")),
	)}, []obj{cluster("up", "", up.Addr()), istioMutual(cluster("rls", "", rlsAddr), rlsID), istioMutual(cluster("impostor", "", impostorAddr), rlsID)}),
		workload(t, ca, waypointID))
	c := dial(t, p.Addr(t, "l"))

	if got := statusOf(call(t, c, map[string]string{"user": "ann"})); got != "ok" {
		t.Errorf("a request the service admits: %s, want ok", got)
	}
	if got := statusOf(call(t, c, map[string]string{"user": "over"})); got != "rate_limited" {
		t.Errorf("a request the service refuses: %s, want rate_limited", got)
	}
	rls.mu.Lock()
	callers := append([]string(nil), rls.callers...)
	rls.mu.Unlock()
	if len(callers) != 2 || callers[0] != waypointID {
		t.Errorf("the service saw callers %v, want the proxy's %s twice", callers, waypointID)
	}
	if got := statusOf(call(t, c, map[string]string{"route": "impostor", "user": "ann"})); got != "rate_limited" {
		t.Errorf("a service with another identity: %s, want rate_limited (the call fails, deny_on_fail)", got)
	}
	if n := impostor.calls.Load(); n != 0 {
		t.Errorf("the impostor answered %d calls", n)
	}
}
