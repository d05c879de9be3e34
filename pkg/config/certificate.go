package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A listener's own TLS, as the controller writes it for an Istio Gateway
// server with tls.mode SIMPLE or MUTUAL and a credentialName: one
// certificate secret by SDS name, and for MUTUAL a validation secret and
// require_client_certificate. The secrets are Secret resources of the same
// config (SDS, or secrets in a static one), found by name; any name works
// (the controller uses Istio's "kubernetes://<namespace>/<name>" and
// "...-cacert"), and a reference's sds_config is not read.
//
//	common_tls_context:
//	  tls_certificate_sds_secret_configs: [{name: CERT}]  # Secret CERT: tls_certificate {certificate_chain, private_key}
//	  validation_context_sds_secret_config: {name: CA}    # optional; Secret CA: validation_context {trusted_ca}
//	require_client_certificate: true                      # needs the validation context

// ListenerCertificate is a listener's own TLS, read from its secrets.
type ListenerCertificate struct {
	// Certificate is what the listener presents, with its parsed Leaf.
	Certificate tls.Certificate
	// ClientCAs verify client certificates; nil when the context names no
	// validation secret, and then no client certificate is asked for.
	ClientCAs *x509.CertPool
	// RequireClientCertificate refuses a client that sends none (MUTUAL).
	// Without it, a client certificate is verified when one is sent.
	RequireClientCertificate bool
}

// UsesWorkloadCertificate reports whether a TLS context is Istio mutual
// TLS, served from the proxy's workload identity: it names SecretDefault
// as its certificate. Any other context is a listener's own certificate.
func UsesWorkloadCertificate(ctx *tlsv3.DownstreamTlsContext) bool {
	return slices.ContainsFunc(ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs(), func(c *tlsv3.SdsSecretConfig) bool {
		return c.GetName() == SecretDefault
	})
}

// Field paths of the SDS references, as errors name them.
const (
	certificateField = "common_tls_context.tls_certificate_sds_secret_configs[0]"
	validationField  = "common_tls_context.validation_context_sds_secret_config"
)

// ownTLSShape checks a context for a listener's own certificate without
// its secrets. What the proxy would not apply (inline certificates, ALPN,
// TLS parameters, subject name checks...) is refused, not ignored.
func ownTLSShape(ctx *tlsv3.DownstreamTlsContext) error {
	if extra := unsupportedOwnTLS(ctx); len(extra) > 0 {
		return fmt.Errorf("%s: not supported with a listener's own certificate (only common_tls_context.tls_certificate_sds_secret_configs, common_tls_context.validation_context_sds_secret_config and require_client_certificate are)", strings.Join(extra, ", "))
	}
	c := ctx.GetCommonTlsContext()
	if n := len(c.GetTlsCertificateSdsSecretConfigs()); n != 1 {
		return fmt.Errorf("common_tls_context.tls_certificate_sds_secret_configs: exactly one is supported, %q (the workload certificate, for Istio mutual TLS) or a secret with a tls_certificate (the listener's own); there are %d", SecretDefault, n)
	}
	if c.GetTlsCertificateSdsSecretConfigs()[0].GetName() == "" {
		return fmt.Errorf("%s.name: must not be empty", certificateField)
	}
	ca := c.GetValidationContextSdsSecretConfig()
	if ca != nil && ca.GetName() == "" {
		return fmt.Errorf("%s.name: must not be empty", validationField)
	}
	if ctx.GetRequireClientCertificate().GetValue() && ca == nil {
		return fmt.Errorf("require_client_certificate: true needs %s (the secret with the CA that verifies clients)", validationField)
	}
	return nil
}

// unsupportedOwnTLS names the fields of ctx set besides those ownTLSShape
// reads, sorted.
func unsupportedOwnTLS(ctx *tlsv3.DownstreamTlsContext) []string {
	rest := proto.Clone(ctx).(*tlsv3.DownstreamTlsContext)
	rest.RequireClientCertificate = nil
	c := rest.GetCommonTlsContext()
	rest.CommonTlsContext = nil
	extra := setFields(rest, "")
	if c != nil {
		c.TlsCertificateSdsSecretConfigs = nil
		if _, sds := c.GetValidationContextType().(*tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig); sds {
			c.ValidationContextType = nil
		}
		extra = append(extra, setFields(c, "common_tls_context.")...)
	}
	slices.Sort(extra)
	return extra
}

// setFields names the fields set in m, each after prefix, sorted.
func setFields(m proto.Message, prefix string) []string {
	var out []string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		out = append(out, prefix+string(fd.Name()))
		return true
	})
	slices.Sort(out)
	return out
}

// ReadListenerCertificate reads the certificate (and the clients' CA) of a
// listener with its own TLS from secrets, the config's Secret resources by
// name; it checks ctx's shape as DownstreamTLS does. For Istio mutual TLS
// (UsesWorkloadCertificate) it returns nil: the proxy's identity serves
// it. An error names the field and the secret, never the secret's content.
func ReadListenerCertificate(ctx *tlsv3.DownstreamTlsContext, secrets map[string]*tlsv3.Secret) (*ListenerCertificate, error) {
	if UsesWorkloadCertificate(ctx) {
		return nil, nil
	}
	if err := ownTLSShape(ctx); err != nil {
		return nil, err
	}
	c := ctx.GetCommonTlsContext()
	cert, err := readCertificate(c.GetTlsCertificateSdsSecretConfigs()[0].GetName(), secrets)
	if err != nil {
		return nil, err
	}
	out := &ListenerCertificate{Certificate: cert, RequireClientCertificate: ctx.GetRequireClientCertificate().GetValue()}
	if ca := c.GetValidationContextSdsSecretConfig(); ca != nil {
		if out.ClientCAs, err = readClientCAs(ca.GetName(), secrets); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// noSecret is the error for a name no secret has.
func noSecret(field, name string) error {
	return fmt.Errorf("%s.name: no secret named %q (secrets come over SDS, or under secrets in a static config)", field, name)
}

// readCertificate reads the tls_certificate secret name: its chain and key
// must make a pair.
func readCertificate(name string, secrets map[string]*tlsv3.Secret) (tls.Certificate, error) {
	sec := secrets[name]
	if sec == nil {
		return tls.Certificate{}, noSecret(certificateField, name)
	}
	fail := func(format string, args ...any) (tls.Certificate, error) {
		return tls.Certificate{}, fmt.Errorf("%s: secret %q: %w", certificateField, name, fmt.Errorf(format, args...))
	}
	tc := sec.GetTlsCertificate()
	if tc == nil {
		return fail("tls_certificate: required (the certificate and key the listener presents)")
	}
	rest := proto.Clone(tc).(*tlsv3.TlsCertificate)
	rest.CertificateChain, rest.PrivateKey = nil, nil
	if extra := setFields(rest, "tls_certificate."); len(extra) > 0 {
		return fail("%s: not supported (only certificate_chain and private_key are)", strings.Join(extra, ", "))
	}
	chain, err := inlinePEM(tc.GetCertificateChain())
	if err != nil {
		return fail("tls_certificate.certificate_chain: %w", err)
	}
	key, err := inlinePEM(tc.GetPrivateKey())
	if err != nil {
		return fail("tls_certificate.private_key: %w", err)
	}
	// X509KeyPair's errors say what is wrong, never what the key holds.
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return fail("tls_certificate: certificate_chain and private_key do not make a certificate and key pair: %w", err)
	}
	return cert, nil
}

// readClientCAs reads the validation_context secret name: its trusted_ca
// is one or more PEM certificates, every block of which must parse.
func readClientCAs(name string, secrets map[string]*tlsv3.Secret) (*x509.CertPool, error) {
	sec := secrets[name]
	if sec == nil {
		return nil, noSecret(validationField, name)
	}
	fail := func(format string, args ...any) (*x509.CertPool, error) {
		return nil, fmt.Errorf("%s: secret %q: %w", validationField, name, fmt.Errorf(format, args...))
	}
	vc := sec.GetValidationContext()
	if vc == nil {
		return fail("validation_context: required (the CA that verifies clients)")
	}
	rest := proto.Clone(vc).(*tlsv3.CertificateValidationContext)
	rest.TrustedCa = nil
	if extra := setFields(rest, "validation_context."); len(extra) > 0 {
		return fail("%s: not supported (only trusted_ca is)", strings.Join(extra, ", "))
	}
	data, err := inlinePEM(vc.GetTrustedCa())
	if err != nil {
		return fail("validation_context.trusted_ca: %w", err)
	}
	pool, err := parseCertificates(data)
	if err != nil {
		return fail("validation_context.trusted_ca: %w", err)
	}
	return pool, nil
}

// parseCertificates reads PEM certificates into a pool; unlike
// CertPool.AppendCertsFromPEM it refuses a block it cannot parse rather
// than skip it.
func parseCertificates(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		n++
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, not a CERTIFICATE", n, b.Type)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return pool, nil
}

// inlinePEM is the content of a DataSource that holds a PEM: inline, as
// the controller sends it. A file would be read once per update and not
// when it changes, so it is refused rather than half served.
func inlinePEM(d *corev3.DataSource) ([]byte, error) {
	var b []byte
	switch sp := d.GetSpecifier().(type) {
	case nil:
		return nil, errors.New("required")
	case *corev3.DataSource_InlineBytes:
		b = sp.InlineBytes
	case *corev3.DataSource_InlineString:
		b = []byte(sp.InlineString)
	default:
		return nil, errors.New("only inline_bytes and inline_string are supported")
	}
	if len(b) == 0 {
		return nil, errors.New("is empty")
	}
	return b, nil
}
