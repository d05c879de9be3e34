package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// Authentication of proxies. A stream is authenticated once, when it
// opens, from its gRPC context: the client certificate its TLS handshake
// verified against the mesh roots (CertAuthenticator), or a bearer token
// checked with the Kubernetes TokenReview API (TokenReviewer). The
// verified namespace and identity then replace what the proxy's node
// metadata claims, so a proxy cannot read another namespace's config.
// Like istiod, the server does not authenticate a stream again while it
// stays open; Options.MaxConnectionAge bounds how long that is.

// Ways a Principal was verified.
const (
	MethodMTLS  = "mtls"
	MethodToken = "token"
)

// Principal is who a stream's peer proved to be.
type Principal struct {
	// Namespace and ServiceAccount are the proxy's Kubernetes service
	// account.
	Namespace, ServiceAccount string
	// ID is the SPIFFE identity of the peer's certificate; zero when the
	// peer showed a token.
	ID identity.ID
	// Method is MethodMTLS or MethodToken.
	Method string
}

// Authenticator verifies who opened a stream.
type Authenticator interface {
	// Authenticate returns the principal of the stream whose context is
	// ctx (its peer and incoming metadata). An error wrapping
	// ErrNoCredentials means ctx carries none of the credentials this
	// Authenticator checks, and the server tries the next one; any other
	// error refuses the stream, with its gRPC status code when it has one
	// and Unauthenticated otherwise.
	Authenticate(ctx context.Context) (Principal, error)
}

// ErrNoCredentials is wrapped by an Authenticator's error when the stream
// carries none of its kind of credentials.
var ErrNoCredentials = errors.New("xds: no credentials")

// Reasons a stream is refused: the values of the reason label of
// rosetta_xds_streams_refused_total.
const (
	reasonNoCredentials      = "no_credentials"
	reasonInvalidCertificate = "invalid_certificate"
	reasonInvalidToken       = "invalid_token"
	reasonReviewUnavailable  = "token_review_unavailable"
	reasonOther              = "other"
	reasonNodeIDChanged      = "node_id_changed"
	reasonNodeIDConflict     = "node_id_conflict"
)

// refusal is an error that refuses a stream: its gRPC code, and the
// reason it is counted under.
type refusal struct {
	reason string
	code   codes.Code
	msg    string
}

func (r *refusal) Error() string { return r.msg }

// GRPCStatus makes gRPC send code to the client.
func (r *refusal) GRPCStatus() *status.Status { return status.New(r.code, r.msg) }

// asRefusal turns an Authenticator's error into a refusal.
func asRefusal(err error) *refusal {
	var r *refusal
	if errors.As(err, &r) {
		return r
	}
	code := codes.Unauthenticated
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		code = s.Code()
	}
	return &refusal{reason: reasonOther, code: code, msg: err.Error()}
}

// CertAuthenticator authenticates a stream by the client certificate its
// TLS handshake verified against the mesh roots (ServerTLS with
// verifyClients): the certificate's SPIFFE ID gives the namespace and the
// identity.
type CertAuthenticator struct{}

// Authenticate implements Authenticator.
func (CertAuthenticator) Authenticate(ctx context.Context) (Principal, error) {
	cs, ok := tlsState(ctx)
	if !ok || len(cs.PeerCertificates) == 0 {
		return Principal{}, fmt.Errorf("%w: no client certificate", ErrNoCredentials)
	}
	if len(cs.VerifiedChains) == 0 {
		// Only a TLS config that requests certificates without verifying
		// them gets here; ServerTLS verifies them.
		return Principal{}, &refusal{reasonInvalidCertificate, codes.Unauthenticated,
			"xds: the client certificate was not verified against the mesh roots"}
	}
	id, ok := identity.PeerID(*cs)
	if !ok {
		return Principal{}, &refusal{reasonInvalidCertificate, codes.Unauthenticated,
			"xds: the client certificate has no SPIFFE ID of the form spiffe://TD/ns/NS/sa/SA"}
	}
	return Principal{Namespace: id.Namespace, ServiceAccount: id.ServiceAccount, ID: id, Method: MethodMTLS}, nil
}

// tlsState returns the TLS state of the stream's connection; false on a
// plaintext connection.
func tlsState(ctx context.Context) (*tls.ConnectionState, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, false
	}
	return &info.State, true
}

// peerAddr is the stream's remote address, for logs.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// authenticate runs the Authenticators in order on a new stream's context.
// It returns nil, nil when authentication is off.
func (s *Server) authenticate(ctx context.Context) (*Principal, error) {
	if len(s.opts.Authenticators) == 0 {
		return nil, nil
	}
	var missing []string
	for _, a := range s.opts.Authenticators {
		p, err := a.Authenticate(ctx)
		if err == nil {
			return &p, nil
		}
		if !errors.Is(err, ErrNoCredentials) {
			return nil, s.refuse(asRefusal(err), peerAddr(ctx), "")
		}
		missing = append(missing, strings.TrimPrefix(err.Error(), ErrNoCredentials.Error()+": "))
	}
	return nil, s.refuse(&refusal{reasonNoCredentials, codes.Unauthenticated,
		"xds: unauthenticated: " + strings.Join(missing, ", ")}, peerAddr(ctx), "")
}

// refuse counts and logs a refused stream and returns r as the error that
// ends it.
func (s *Server) refuse(r *refusal, peer, node string) error {
	s.metrics.StreamsRefused.WithLabelValues(r.reason).Inc()
	s.log.Warn("xds stream refused", "reason", r.reason, "code", r.code.String(), "peer", peer, "node", node, "err", r.msg)
	return r
}

// applyPrincipal replaces what the node metadata claims with what pr
// verified: the namespace always; the identity with the certificate's,
// or, for a token, with the SPIFFE ID of the token's service account when
// the proxy claims to have one (a token proves the service account, not
// that the proxy holds a certificate). A claim that differs is logged and
// counted.
func (s *Server) applyPrincipal(p *controller.Proxy, pr *Principal) {
	if p.Namespace != "" && p.Namespace != pr.Namespace {
		s.metrics.ClaimMismatches.WithLabelValues("namespace").Inc()
		s.log.Warn("proxy claims another namespace than it proved; using the proved one",
			"node", p.ID, "claimed", p.Namespace, "verified", pr.Namespace, "method", pr.Method)
	}
	p.Namespace = pr.Namespace
	verified := ""
	switch {
	case pr.Method == MethodMTLS:
		verified = pr.ID.String()
	case p.Identity != "":
		verified = identity.ID{TrustDomain: s.trustDomain(), Namespace: pr.Namespace, ServiceAccount: pr.ServiceAccount}.String()
	}
	if p.Identity != "" && p.Identity != verified {
		s.metrics.ClaimMismatches.WithLabelValues("identity").Inc()
		s.log.Warn("proxy claims another identity than it proved; using the proved one",
			"node", p.ID, "claimed", p.Identity, "verified", verified, "method", pr.Method)
	}
	p.Identity = verified
}

// DefaultTrustDomain is Istio's default trust domain.
const DefaultTrustDomain = "cluster.local"

func (s *Server) trustDomain() string {
	if s.opts.TrustDomain != "" {
		return s.opts.TrustDomain
	}
	return DefaultTrustDomain
}

// Interface guards.
var (
	_ Authenticator = CertAuthenticator{}
	_ Authenticator = (*TokenReviewer)(nil)
)
