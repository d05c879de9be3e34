package controller

// Istio mTLS for proxies with a workload identity (Proxy.Identity), in the
// form istiod gives Envoy, so the proxy reads what a sidecar would:
//
//   - Inbound: the PeerAuthentication that applies to the proxy's workload
//     sets each listener's mode. STRICT: one filter chain matching
//     transport_protocol "tls" with a DownstreamTlsContext that requires a
//     client certificate (SDS "default" for the proxy's certificate,
//     "ROOTCA" to verify the caller). PERMISSIVE: that chain, then one
//     matching "raw_buffer" without a transport socket. DISABLE: one chain
//     without a transport socket, as for proxies without an identity.
//   - Outbound: Istio's auto mTLS. A cluster gets two
//     transport_socket_matches: "tlsMode-istio" (Istio mTLS, verifying the
//     service's identities) for endpoints whose metadata says tlsMode:
//     istio (Pods and WorkloadEntries labelled security.istio.io/tlsMode:
//     istio, that is with a sidecar), and "tlsMode-disabled" (plaintext)
//     for the others. A DestinationRule's tls mode ISTIO_MUTUAL puts Istio
//     mTLS on the cluster itself (every endpoint); DISABLE leaves it
//     plaintext; SIMPLE and MUTUAL (certificates from files or Secrets) are
//     not supported yet and are treated as DISABLE, with a warning.

import (
	"fmt"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// tlsModeLabel marks the Pods and WorkloadEntries that run an Istio sidecar
// (Istio's injector sets it to "istio").
const tlsModeLabel = "security.istio.io/tlsMode"

// defaultTrustDomain is Istio's default trust domain.
const defaultTrustDomain = "cluster.local"

// The ALPN values istiod gives a sidecar's inbound TLS chains, and the one
// it offers upstream. The proxy answers "istio" first, so a sidecar that
// offers "istio-peer-exchange" too does not expect Istio's metadata
// exchange from it.
var (
	inboundALPN  = []string{"istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"}
	outboundALPN = []string{"istio"}
)

type mtlsMode = securityv1beta1.PeerAuthentication_MutualTLS_Mode

// Modes of a PeerAuthentication.
const (
	mtlsUnset      = securityv1beta1.PeerAuthentication_MutualTLS_UNSET
	mtlsDisable    = securityv1beta1.PeerAuthentication_MutualTLS_DISABLE
	mtlsPermissive = securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE
	mtlsStrict     = securityv1beta1.PeerAuthentication_MutualTLS_STRICT
)

// inboundMode is the mTLS mode of a proxy's listener on port, as Istio
// settles it: the mesh-wide policy (root namespace, no selector), then the
// namespace-wide one (the proxy's namespace, no selector), then the
// workload's (the proxy's namespace, a selector its labels match), then
// the workload policy's portLevelMtls for port; each overrides the one
// before unless its mode is UNSET. Without any: PERMISSIVE. The oldest
// policy wins among several of one level.
func (ix *Index) inboundMode(p *Proxy, port uint32) mtlsMode {
	var mesh, ns, workload *securityv1.PeerAuthentication
	for _, pa := range ix.peerAuths {
		sel := pa.Spec.GetSelector()
		switch {
		case pa.Namespace == p.Namespace && sel != nil && len(sel.GetMatchLabels()) > 0:
			if workload == nil && labels.SelectorFromSet(sel.GetMatchLabels()).Matches(labels.Set(p.Labels)) {
				workload = pa
			}
		case pa.Namespace == p.Namespace:
			if ns == nil {
				ns = pa
			}
		case pa.Namespace == ix.opts.RootNamespace && len(sel.GetMatchLabels()) == 0:
			if mesh == nil {
				mesh = pa
			}
		}
	}
	mode := mtlsPermissive
	for _, pa := range []*securityv1.PeerAuthentication{mesh, ns, workload} {
		if pa == nil {
			continue
		}
		if m := pa.Spec.GetMtls().GetMode(); m != mtlsUnset {
			mode = m
		}
	}
	if workload != nil {
		if m := workload.Spec.GetPortLevelMtls()[port].GetMode(); m != mtlsUnset {
			mode = m
		}
	}
	return mode
}

// filterChains are a listener's filter chains for its mTLS mode; every
// chain carries the same filters.
func filterChains(mode mtlsMode, filters []*listenerv3.Filter) []*listenerv3.FilterChain {
	plain := &listenerv3.FilterChain{Filters: filters}
	switch mode {
	case mtlsStrict:
		return []*listenerv3.FilterChain{tlsChain(filters)}
	case mtlsPermissive:
		plain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: config.TransportRaw}
		return []*listenerv3.FilterChain{tlsChain(filters), plain}
	}
	return []*listenerv3.FilterChain{plain}
}

func tlsChain(filters []*listenerv3.Filter) *listenerv3.FilterChain {
	ctx := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: config.SecretDefault}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: config.SecretRootCA},
			},
			AlpnProtocols: inboundALPN,
		},
	}
	return &listenerv3.FilterChain{
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: config.TransportTLS},
		Filters:          filters,
		TransportSocket:  tlsSocket(ctx),
	}
}

func tlsSocket(ctx proto.Message) *corev3.TransportSocket {
	a, err := anypb.New(ctx)
	if err != nil {
		panic(fmt.Sprintf("controller: marshal TLS context: %v", err)) // cannot fail for a valid message
	}
	return &corev3.TransportSocket{Name: config.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

// trustDomain is the trust domain of the identities clusters verify: the
// option, else the proxy's own, else Istio's default.
func (ix *Index) trustDomain(p *Proxy) string {
	if ix.opts.TrustDomain != "" {
		return ix.opts.TrustDomain
	}
	if rest, ok := strings.CutPrefix(p.Identity, "spiffe://"); ok {
		if td, _, _ := strings.Cut(rest, "/"); td != "" {
			return td
		}
	}
	return defaultTrustDomain
}

// serviceSANs are the identities a service's endpoints may present: a
// ServiceEntry's subjectAltNames and the SPIFFE identities of its
// endpoints' service accounts, sorted.
func (ix *Index) serviceSANs(svc *Service, td string) []string {
	if svc == nil {
		return nil
	}
	set := map[string]bool{}
	for _, s := range svc.SubjectAltNames {
		set[s] = true
	}
	for _, e := range svc.Endpoints {
		if ns, sa, ok := strings.Cut(e.ServiceAccount, "/"); ok {
			set[fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", td, ns, sa)] = true
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// istioSNI is the SNI istiod sets towards a service's port and subset.
func istioSNI(host string, port uint32, subset string) string {
	return fmt.Sprintf("outbound_.%d_.%s_.%s", port, subset, host)
}

// upstreamContext is Istio mTLS towards a cluster: the proxy's certificate,
// ALPN "istio", and the peer verified against the mesh root and sans, as
// exact URI names (a ServiceEntry's subjectAltNames too: Istio workloads
// carry SPIFFE URIs, and the proxy checks URI names only, so a plain name
// matches no certificate and the connection fails rather than trusting
// any mesh identity).
func upstreamContext(sni string, sans []string) *tlsv3.UpstreamTlsContext {
	var matchers []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		matchers = append(matchers, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}})
	}
	return &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  outboundALPN,
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: config.SecretDefault}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: matchers},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: config.SecretRootCA},
			}},
		},
	}
}

// applyUpstreamTLS sets a cluster's transport for a proxy with an
// identity, from the merged DestinationRule tls settings (nil: auto mTLS).
func (ix *Index) applyUpstreamTLS(c *clusterv3.Cluster, host string, port uint32, subset string, tls *v1alpha3.ClientTLSSettings, td string) {
	sni := istioSNI(host, port, subset)
	sans := ix.serviceSANs(ix.serviceOf(host), td)
	if tls == nil {
		c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
			{
				Name:            "tlsMode-" + config.TLSModeIstio,
				Match:           &structpb.Struct{Fields: map[string]*structpb.Value{config.TLSModeKey: structpb.NewStringValue(config.TLSModeIstio)}},
				TransportSocket: tlsSocket(upstreamContext(sni, sans)),
			},
			{
				Name:            "tlsMode-disabled",
				Match:           &structpb.Struct{},
				TransportSocket: &corev3.TransportSocket{Name: config.RawTransportSocket},
			},
		}
		return
	}
	if tls.GetMode() != v1alpha3.ClientTLSSettings_ISTIO_MUTUAL {
		return // DISABLE; SIMPLE and MUTUAL are not supported (warned at build)
	}
	if s := tls.GetSni(); s != "" {
		sni = s
	}
	if s := tls.GetSubjectAltNames(); len(s) > 0 {
		sans = s
	}
	c.TransportSocket = tlsSocket(upstreamContext(sni, sans))
}

// istioEndpointMetadata is the metadata of an endpoint with a sidecar,
// which the cluster's "tlsMode-istio" match selects.
func istioEndpointMetadata() *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		config.TransportSocketMatchKey: {Fields: map[string]*structpb.Value{config.TLSModeKey: structpb.NewStringValue(config.TLSModeIstio)}},
	}}
}

// warnClientTLS lists the DestinationRules whose tls settings ask for what
// the proxy cannot do yet (certificates from files or Secrets).
func warnClientTLS(drs []*networkingv1.DestinationRule) []string {
	var out []string
	check := func(dr *networkingv1.DestinationRule, path string, tls *v1alpha3.ClientTLSSettings) {
		switch m := tls.GetMode(); m {
		case v1alpha3.ClientTLSSettings_SIMPLE, v1alpha3.ClientTLSSettings_MUTUAL:
			out = append(out, fmt.Sprintf("DestinationRule %s: %s.mode %s is not supported yet (certificates from files or Secrets); the proxy connects without TLS, as for DISABLE", key(dr), path, m))
		}
	}
	policy := func(dr *networkingv1.DestinationRule, path string, tp *v1alpha3.TrafficPolicy) {
		check(dr, path+".tls", tp.GetTls())
		for i, pl := range tp.GetPortLevelSettings() {
			check(dr, fmt.Sprintf("%s.portLevelSettings[%d].tls", path, i), pl.GetTls())
		}
	}
	for _, dr := range drs {
		policy(dr, "spec.trafficPolicy", dr.Spec.GetTrafficPolicy())
		for i, s := range dr.Spec.GetSubsets() {
			// Most subsets have no policy: no path to make for them.
			if tp := s.GetTrafficPolicy(); tp != nil {
				policy(dr, fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), tp)
			}
		}
	}
	return out
}
