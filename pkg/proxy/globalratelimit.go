package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/router"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
)

// maxRateLimitConns bounds the gRPC connections kept to rate limit service
// endpoints; past it they are all closed and dialled again as needed, so
// endpoints that come and go cannot grow the set without bound.
const maxRateLimitConns = 64

// Outcomes of a global rate limit check, as the decisions metric names them.
const (
	rlsOK           = "ok"
	rlsOverLimit    = "over_limit"
	rlsFailedDenied = "failed_denied"
	rlsFailedPassed = "failed_allowed"
)

// rateLimitService asks Envoy rate limit services
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) about
// requests, over one gRPC connection per service endpoint, and counts the
// decisions.
type rateLimitService struct {
	mu        sync.Mutex
	conns     map[string]*grpc.ClientConn // by endpoint address
	decisions *prometheus.CounterVec
}

func newRateLimitService(reg prometheus.Registerer) *rateLimitService {
	s := &rateLimitService{
		conns: map[string]*grpc.ClientConn{},
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_global_rate_limit_decisions_total",
			Help: "Requests a rate limit service was asked about, by listener, route and outcome (ok, over_limit, failed_denied and failed_allowed: the service failed or was late, and deny_on_fail decided).",
		}, []string{"listener", "route", "outcome"}),
	}
	reg.MustRegister(s.decisions)
	return s
}

// askRateLimitService asks the route's rate limit service about the
// request when the route has a global limit that applies to it, and
// reports whether it did. Then the request goes on (inject) or is
// refused, on a goroutine of its own once the service answers or its
// timeout passes: the reader goroutine never waits for the service.
func (ex *exchange) askRateLimitService() bool {
	g := ex.route.Action.GlobalLimit
	values, ok := g.Descriptor(ex.req)
	if !ok {
		return false
	}
	ex.round = nil // the rest runs on the call's goroutine, not on the reader
	go ex.p.rls.check(ex, g, values)
	return true
}

func (s *rateLimitService) check(ex *exchange, g *router.GlobalLimit, values []string) {
	outcome, err := s.decide(ex.snap, g, values)
	s.decisions.WithLabelValues(ex.dc.lc.statPrefix, ex.route.Name, outcome).Inc()
	switch outcome {
	case rlsOverLimit:
		ex.local(codec.StatusRateLimited, "rate limited by the rate limit service (domain "+g.Domain+")")
	case rlsFailedDenied:
		ex.local(codec.StatusRateLimited, "rate limit service failed and deny_on_fail is set: "+err.Error())
	default:
		ex.inject()
	}
}

// decide asks the service and turns its answer into an outcome; err says
// why the service failed.
func (s *rateLimitService) decide(snap *snapshot, g *router.GlobalLimit, values []string) (string, error) {
	code, err := s.ask(snap, g, values)
	if err == nil && code != rlsv3.RateLimitResponse_OK && code != rlsv3.RateLimitResponse_OVER_LIMIT {
		err = fmt.Errorf("the service answered %s", code)
	}
	switch {
	case err != nil && g.DenyOnFail:
		return rlsFailedDenied, err
	case err != nil:
		return rlsFailedPassed, err
	case code == rlsv3.RateLimitResponse_OVER_LIMIT:
		return rlsOverLimit, nil
	}
	return rlsOK, nil
}

// ask calls ShouldRateLimit on an endpoint of the service's cluster, with
// one descriptor, within the limit's timeout.
func (s *rateLimitService) ask(snap *snapshot, g *router.GlobalLimit, values []string) (rlsv3.RateLimitResponse_Code, error) {
	cl := snap.clusters[g.Cluster]
	if cl == nil {
		return 0, fmt.Errorf("cluster %q not found", g.Cluster)
	}
	ep := cl.Pick(0, nil)
	if ep == nil {
		return 0, fmt.Errorf("cluster %q has no healthy endpoint", g.Cluster)
	}
	conn, err := s.conn(ep)
	if err != nil {
		return 0, err
	}
	d := &ratelimitv3.RateLimitDescriptor{}
	for i, e := range g.Entries {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: e.Key, Value: values[i]})
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.Timeout)
	defer cancel()
	resp, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain:      g.Domain,
		Descriptors: []*ratelimitv3.RateLimitDescriptor{d},
		HitsAddend:  1,
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", ep.Addr, err)
	}
	return resp.GetOverallCode(), nil
}

// conn is the gRPC connection to a service endpoint, made on first use,
// with the endpoint's TLS (Istio mTLS when the cluster has it). Making one
// does not dial: gRPC connects on the first call, and again after a
// failure.
func (s *rateLimitService) conn(ep *upstream.Endpoint) (*grpc.ClientConn, error) {
	cfg, tlsKey := ep.TLS()
	key := ep.Addr + "|" + tlsKey
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[key]; c != nil {
		return c, nil
	}
	if len(s.conns) >= maxRateLimitConns {
		s.closeLocked()
	}
	creds := insecure.NewCredentials()
	if cfg != nil {
		// Istio's ALPN for HTTP/2 in the mesh, so a sidecar in front of
		// the service takes it as mTLS HTTP/2; gRPC adds "h2" after them.
		cfg.NextProtos = rateLimitALPN
		creds = credentials.NewTLS(cfg)
	}
	// passthrough: the address (an IP or a DNS name with its port) goes to
	// the dialer as it is, as the proxy's other upstream connections do.
	c, err := grpc.NewClient("passthrough:///"+ep.Addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("rate limit service %s: %w", ep.Addr, err)
	}
	s.conns[key] = c
	return c, nil
}

// rateLimitALPN is what istiod offers a sidecar's mTLS HTTP/2 clusters.
var rateLimitALPN = []string{"istio-h2", "istio", "h2"}

// close closes every connection; calls in flight fail.
func (s *rateLimitService) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeLocked()
}

func (s *rateLimitService) closeLocked() error {
	var errs []error
	for addr, c := range s.conns {
		errs = append(errs, c.Close())
		delete(s.conns, addr)
	}
	return errors.Join(errs...)
}
