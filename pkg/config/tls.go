package config

import (
	"errors"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Istio mutual TLS as the controller writes it and the proxy reads it: the
// names istiod gives Envoy, so a config dump reads like an Istio sidecar's.
const (
	// TLSTransportSocket and RawTransportSocket name a listener's or
	// cluster's transport socket.
	TLSTransportSocket = "envoy.transport_sockets.tls"
	RawTransportSocket = "envoy.transport_sockets.raw_buffer"
	// TransportTLS and TransportRaw are filter_chain_match.transport_protocol
	// values: a PERMISSIVE listener has one chain of each.
	TransportTLS = "tls"
	TransportRaw = "raw_buffer"
	// SecretDefault is the workload certificate and SecretRootCA the mesh
	// roots: the SDS names Istio uses; the proxy serves both from its
	// workload identity.
	SecretDefault = "default"
	SecretRootCA  = "ROOTCA"
	// TransportSocketMatchKey is the endpoint metadata filter that
	// transport_socket_matches read, and TLSModeKey/TLSModeIstio the entry
	// Istio sets for endpoints with a sidecar (the pod label
	// security.istio.io/tlsMode=istio).
	TransportSocketMatchKey = "envoy.transport_socket_match"
	TLSModeKey              = "tlsMode"
	TLSModeIstio            = "istio"
)

// ErrNoIdentity: the config asks for Istio mutual TLS and the proxy was
// started without a workload identity.
var ErrNoIdentity = errors.New("mutual TLS needs a workload identity (start rosetta-proxy with --identity)")

// IstioMTLS checks that a TLS context is Istio mutual TLS as the proxy
// implements it: the workload certificate from SecretDefault and the peer
// verified against SecretRootCA. Anything else (inline certificates, other
// secrets, a certificate provider) is refused rather than half applied.
func IstioMTLS(c *tlsv3.CommonTlsContext) error {
	certs := c.GetTlsCertificateSdsSecretConfigs()
	if len(certs) != 1 || certs[0].GetName() != SecretDefault || len(c.GetTlsCertificates()) > 0 {
		return fmt.Errorf("common_tls_context.tls_certificate_sds_secret_configs: exactly one, named %q (the workload certificate), is supported", SecretDefault)
	}
	root := c.GetValidationContextSdsSecretConfig()
	if cv := c.GetCombinedValidationContext(); cv != nil {
		root = cv.GetValidationContextSdsSecretConfig()
	}
	if root.GetName() != SecretRootCA {
		return fmt.Errorf("common_tls_context: the peer must be verified against the SDS secret %q (the mesh roots)", SecretRootCA)
	}
	return nil
}

// URISANs are the exact URI subject alt names a TLS context requires of
// its peer (Istio puts the SPIFFE IDs it accepts there).
func URISANs(c *tlsv3.CommonTlsContext) ([]string, error) {
	vc := c.GetCombinedValidationContext().GetDefaultValidationContext()
	if vc == nil {
		vc = c.GetValidationContext()
	}
	var out []string
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI || m.GetMatcher().GetExact() == "" {
			return nil, fmt.Errorf("match_typed_subject_alt_names[%d]: only exact URI names are supported", i)
		}
		out = append(out, m.GetMatcher().GetExact())
	}
	return out, nil
}

// DownstreamTLS reads a listener filter chain's transport socket: nil for
// plaintext (none, or raw_buffer). A TLS context is one of two kinds:
// Istio mutual TLS (UsesWorkloadCertificate: the certificate SecretDefault,
// clients verified against SecretRootCA, both the proxy's workload
// identity), or the listener's own certificate (an Istio Gateway server's
// SIMPLE or MUTUAL mode), checked here for its shape only: its secrets
// are read by ReadListenerCertificate.
func DownstreamTLS(ts *corev3.TransportSocket) (*tlsv3.DownstreamTlsContext, error) {
	if ts == nil || ts.GetName() == RawTransportSocket {
		return nil, nil
	}
	if ts.GetName() != TLSTransportSocket {
		return nil, fmt.Errorf("transport_socket.name: %q is not supported (%s or %s)", ts.GetName(), TLSTransportSocket, RawTransportSocket)
	}
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return nil, fmt.Errorf("transport_socket.typed_config: %w", err)
	}
	if !UsesWorkloadCertificate(ctx) {
		if err := ownTLSShape(ctx); err != nil {
			return nil, fmt.Errorf("transport_socket: %w", err)
		}
		return ctx, nil
	}
	if !ctx.GetRequireClientCertificate().GetValue() {
		return nil, fmt.Errorf("transport_socket: require_client_certificate must be true (Istio mutual TLS)")
	}
	if err := IstioMTLS(ctx.GetCommonTlsContext()); err != nil {
		return nil, fmt.Errorf("transport_socket: %w", err)
	}
	return ctx, nil
}

// UpstreamTLS reads a cluster's transport socket: nil for plaintext.
func UpstreamTLS(ts *corev3.TransportSocket) (*tlsv3.UpstreamTlsContext, error) {
	if ts == nil || ts.GetName() == RawTransportSocket {
		return nil, nil
	}
	if ts.GetName() != TLSTransportSocket {
		return nil, fmt.Errorf("transport_socket.name: %q is not supported (%s or %s)", ts.GetName(), TLSTransportSocket, RawTransportSocket)
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return nil, fmt.Errorf("transport_socket.typed_config: %w", err)
	}
	if err := IstioMTLS(ctx.GetCommonTlsContext()); err != nil {
		return nil, fmt.Errorf("transport_socket: %w", err)
	}
	if _, err := URISANs(ctx.GetCommonTlsContext()); err != nil {
		return nil, fmt.Errorf("transport_socket: %w", err)
	}
	return ctx, nil
}
