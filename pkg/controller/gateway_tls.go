package controller

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// A Gateway server's own TLS (tls mode SIMPLE or MUTUAL with a
// credentialName) comes, as in Istio, from a Secret of the Gateway's
// namespace with tls.crt and tls.key, and for MUTUAL ca.crt (the clients'
// CA). The controller sends its content to the Gateway's proxies as SDS
// secrets named as Istio names them: "kubernetes://<namespace>/<name>"
// for the certificate and "kubernetes://<namespace>/<name>-cacert" for the
// CA.

// Keys of a TLS Secret.
const (
	secretCert = corev1.TLSCertKey
	secretKey  = corev1.TLSPrivateKeyKey
	secretCA   = corev1.ServiceAccountRootCAKey // "ca.crt"
)

// credentialSecretName is the SDS name of a Gateway credential.
func credentialSecretName(ns, name string) string { return "kubernetes://" + ns + "/" + name }

// gatewayCredentialRefs lists the Secrets Gateways' credentialNames name.
func gatewayCredentialRefs(gws []*networkingv1.Gateway) map[types.NamespacedName]bool {
	refs := map[types.NamespacedName]bool{}
	for _, gw := range gws {
		for _, srv := range gw.Spec.GetServers() {
			if n := srv.GetTls().GetCredentialName(); n != "" {
				refs[types.NamespacedName{Namespace: gw.Namespace, Name: n}] = true
			}
		}
	}
	return refs
}

// gatewayTLSChain makes the filter chain of a server with its own TLS and
// adds its secrets to the proxy's resources; an error says why the server
// cannot be served.
func (g *Generation) gatewayTLSChain(gw *networkingv1.Gateway, tls *v1alpha3.ServerTLSSettings, filters []*listenerv3.Filter) (*listenerv3.FilterChain, error) {
	mutual := tls.GetMode() == v1alpha3.ServerTLSSettings_MUTUAL
	name := tls.GetCredentialName()
	if name == "" {
		return nil, fmt.Errorf("tls.credentialName is required (certificates from files are not supported)")
	}
	sec := g.ix.secrets[gw.Namespace+"/"+name]
	if sec == nil || sec.Type != corev1.SecretTypeTLS || len(sec.Data[secretCert]) == 0 || len(sec.Data[secretKey]) == 0 {
		return nil, fmt.Errorf("tls.credentialName: no Secret %s/%s of type %s with %s and %s that the controller may read", gw.Namespace, name, corev1.SecretTypeTLS, secretCert, secretKey)
	}
	certName := credentialSecretName(gw.Namespace, name)
	g.AddSecret(&tlsv3.Secret{Name: certName, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inlineBytes(sec.Data[secretCert]),
		PrivateKey:       inlineBytes(sec.Data[secretKey]),
	}}})
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: certName}},
	}}
	if mutual {
		if len(sec.Data[secretCA]) == 0 {
			return nil, fmt.Errorf("tls.mode MUTUAL: Secret %s/%s has no %s", gw.Namespace, name, secretCA)
		}
		caName := certName + "-cacert"
		g.AddSecret(&tlsv3.Secret{Name: caName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inlineBytes(sec.Data[secretCA]),
		}}})
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: caName},
		}
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
	}
	return &listenerv3.FilterChain{Filters: filters, TransportSocket: tlsSocket(ctx)}, nil
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}
