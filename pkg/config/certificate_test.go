package config

import (
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

func pemSource(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func certSecret(name string, chain, key []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: pemSource(chain), PrivateKey: pemSource(key),
	}}}
}

func caSecret(name string, ca []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: pemSource(ca)}}}
}

// ownContext is the DownstreamTlsContext the controller writes for a
// Gateway server: SIMPLE with ca "", MUTUAL with ca and require.
func ownContext(cert, ca string, require bool) *tlsv3.DownstreamTlsContext {
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: cert}},
	}}
	if ca != "" {
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: ca},
		}
	}
	if require {
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
	}
	return ctx
}

func tlsSocket(t *testing.T, ctx *tlsv3.DownstreamTlsContext) *corev3.TransportSocket {
	t.Helper()
	a, err := anypb.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

// TestListenerCertificate: a listener's own TLS (a Gateway server's SIMPLE
// or MUTUAL) is read from the config's secrets; what is missing or does
// not parse is refused with the field and the secret named, and never
// with the key in the message. Istio mutual TLS is left to the identity.
func TestListenerCertificate(t *testing.T) {
	ca := identitytest.NewCA("edge")
	chain, key := ca.Leaf("", time.Hour)
	_, otherKey := ca.Leaf("", time.Hour)
	const (
		cert   = "kubernetes://edge/edge-cert"
		cacert = "kubernetes://edge/edge-cert-cacert"
	)
	secrets := map[string]*tlsv3.Secret{}
	for _, s := range []*tlsv3.Secret{
		certSecret(cert, chain, key),
		caSecret(cacert, ca.PEM()),
		certSecret("bad-pem", []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), key),
		certSecret("not-pem", []byte("cert"), []byte("key")),
		certSecret("mismatch", chain, otherKey),
		caSecret("bad-ca", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")),
		caSecret("no-ca", []byte("ca")),
		caSecret("key-as-ca", key),
		{Name: "generic", Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{Secret: pemSource([]byte("x"))}}},
		{Name: "from-file", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/cert.pem"}}, PrivateKey: pemSource(key),
		}}},
		{Name: "with-password", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: pemSource(chain), PrivateKey: pemSource(key), Password: pemSource([]byte("pw")),
		}}},
		{Name: "with-sans", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: pemSource(ca.PEM()), MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS}},
		}}},
	} {
		secrets[s.GetName()] = s
	}
	withALPN := ownContext(cert, "", false)
	withALPN.CommonTlsContext.AlpnProtocols = []string{"h2"}
	twoCerts := ownContext(cert, "", false)
	twoCerts.CommonTlsContext.TlsCertificateSdsSecretConfigs = append(twoCerts.CommonTlsContext.TlsCertificateSdsSecretConfigs, &tlsv3.SdsSecretConfig{Name: "other"})
	inlineCA := ownContext(cert, "", true)
	inlineCA.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: pemSource(ca.PEM())}}

	for _, tc := range []struct {
		name    string
		ctx     *tlsv3.DownstreamTlsContext
		mutual  bool
		wantErr string
	}{
		{name: "simple", ctx: ownContext(cert, "", false)},
		{name: "mutual", ctx: ownContext(cert, cacert, true), mutual: true},
		{name: "client certificate verified if given", ctx: ownContext(cert, cacert, false)},
		{name: "missing certificate", ctx: ownContext("kubernetes://edge/gone", "", false),
			wantErr: `common_tls_context.tls_certificate_sds_secret_configs[0].name: no secret named "kubernetes://edge/gone"`},
		{name: "missing CA", ctx: ownContext(cert, "kubernetes://edge/gone-cacert", true),
			wantErr: `common_tls_context.validation_context_sds_secret_config.name: no secret named "kubernetes://edge/gone-cacert"`},
		{name: "bad certificate PEM", ctx: ownContext("bad-pem", "", false),
			wantErr: `common_tls_context.tls_certificate_sds_secret_configs[0]: secret "bad-pem": tls_certificate: certificate_chain and private_key do not make a certificate and key pair`},
		{name: "no PEM", ctx: ownContext("not-pem", "", false),
			wantErr: `common_tls_context.tls_certificate_sds_secret_configs[0]: secret "not-pem": tls_certificate: certificate_chain and private_key do not make a certificate and key pair: tls: failed to find any PEM data`},
		{name: "key of another certificate", ctx: ownContext("mismatch", "", false),
			wantErr: `secret "mismatch": tls_certificate: certificate_chain and private_key do not make a certificate and key pair: tls: private key does not match public key`},
		{name: "bad CA PEM", ctx: ownContext(cert, "bad-ca", true),
			wantErr: `common_tls_context.validation_context_sds_secret_config: secret "bad-ca": validation_context.trusted_ca: PEM block 1: x509:`},
		{name: "CA not PEM", ctx: ownContext(cert, "no-ca", true),
			wantErr: `common_tls_context.validation_context_sds_secret_config: secret "no-ca": validation_context.trusted_ca: no PEM certificate`},
		{name: "key as CA", ctx: ownContext(cert, "key-as-ca", true),
			wantErr: `secret "key-as-ca": validation_context.trusted_ca: PEM block 1 is a "PRIVATE KEY", not a CERTIFICATE`},
		{name: "certificate of another kind", ctx: ownContext("generic", "", false),
			wantErr: `common_tls_context.tls_certificate_sds_secret_configs[0]: secret "generic": tls_certificate: required`},
		{name: "CA of another kind", ctx: ownContext(cert, cert, true),
			wantErr: `common_tls_context.validation_context_sds_secret_config: secret "kubernetes://edge/edge-cert": validation_context: required`},
		{name: "certificate from a file", ctx: ownContext("from-file", "", false),
			wantErr: `secret "from-file": tls_certificate.certificate_chain: only inline_bytes and inline_string are supported`},
		{name: "encrypted key", ctx: ownContext("with-password", "", false),
			wantErr: `secret "with-password": tls_certificate.password: not supported (only certificate_chain and private_key are)`},
		{name: "subject names", ctx: ownContext(cert, "with-sans", true),
			wantErr: `secret "with-sans": validation_context.match_typed_subject_alt_names: not supported (only trusted_ca is)`},
		{name: "require_client_certificate without CA", ctx: ownContext(cert, "", true),
			wantErr: `transport_socket: require_client_certificate: true needs common_tls_context.validation_context_sds_secret_config`},
		{name: "inline CA", ctx: inlineCA,
			wantErr: `transport_socket: common_tls_context.validation_context: not supported with a listener's own certificate`},
		{name: "ALPN", ctx: withALPN,
			wantErr: `transport_socket: common_tls_context.alpn_protocols: not supported with a listener's own certificate`},
		{name: "two certificates", ctx: twoCerts,
			wantErr: `transport_socket: common_tls_context.tls_certificate_sds_secret_configs: exactly one is supported`},
		{name: "no certificate", ctx: &tlsv3.DownstreamTlsContext{},
			wantErr: `transport_socket: common_tls_context.tls_certificate_sds_secret_configs: exactly one is supported`},
		{name: "empty name", ctx: ownContext("", "", false),
			wantErr: `transport_socket: common_tls_context.tls_certificate_sds_secret_configs[0].name: must not be empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			own, err := readOwn(t, tc.ctx, secrets)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), string(key[40:80])) {
					t.Errorf("the error shows the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if own.Certificate.Leaf == nil || own.Certificate.Leaf.SerialNumber.Cmp(serialOf(t, chain)) != 0 {
				t.Errorf("certificate %v, want the secret's", own.Certificate.Leaf)
			}
			verifies := tc.ctx.GetCommonTlsContext().GetValidationContextSdsSecretConfig() != nil
			if (own.ClientCAs != nil) != verifies || own.RequireClientCertificate != tc.mutual {
				t.Errorf("client CAs %v, required %v; want CAs %v, required %v", own.ClientCAs != nil, own.RequireClientCertificate, verifies, tc.mutual)
			}
		})
	}
}

// readOwn checks ctx as the proxy does: its shape, then its secrets.
func readOwn(t *testing.T, ctx *tlsv3.DownstreamTlsContext, secrets map[string]*tlsv3.Secret) (*ListenerCertificate, error) {
	t.Helper()
	got, err := DownstreamTLS(tlsSocket(t, ctx))
	if err != nil {
		return nil, err
	}
	return ReadListenerCertificate(got, secrets)
}

// serialOf is the serial number of the first certificate in a PEM chain.
func serialOf(t *testing.T, chain []byte) *big.Int {
	t.Helper()
	b, _ := pem.Decode(chain)
	if b == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// TestIstioMTLSUnchanged: "default" and "ROOTCA" still mean the proxy's
// workload identity, with the errors they had; no secret is read for them.
func TestIstioMTLSUnchanged(t *testing.T) {
	istio := ownContext(SecretDefault, SecretRootCA, true)
	own, err := readOwn(t, istio, nil)
	if err != nil || own != nil {
		t.Errorf("Istio mutual TLS: %v, %v; want no listener certificate and no error", own, err)
	}
	for _, tc := range []struct {
		ctx     *tlsv3.DownstreamTlsContext
		wantErr string
	}{
		{ownContext(SecretDefault, SecretRootCA, false), "transport_socket: require_client_certificate must be true (Istio mutual TLS)"},
		{ownContext(SecretDefault, "other", true), `transport_socket: common_tls_context: the peer must be verified against the SDS secret "ROOTCA" (the mesh roots)`},
		{ownContext(SecretDefault, "", true), `transport_socket: common_tls_context: the peer must be verified against the SDS secret "ROOTCA" (the mesh roots)`},
	} {
		if _, err := DownstreamTLS(tlsSocket(t, tc.ctx)); err == nil || err.Error() != tc.wantErr {
			t.Errorf("%v: err = %v, want %q", tc.ctx, err, tc.wantErr)
		}
	}
}
