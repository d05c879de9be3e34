package identity

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// Defaults of IstiodSource, as istiod and istio-agent use them.
const (
	DefaultServerName = "istiod.istio-system.svc"
	DefaultClusterID  = "Kubernetes"
	DefaultTTL        = 24 * time.Hour
)

// IstiodSource asks istiod's CA for a workload certificate
// (istio.v1.auth.IstioCertificateService/CreateCertificate), as
// istio-agent does. istiod authenticates the call by the service-account
// token (audience istio-ca) and sets the certificate's SPIFFE ID from it.
type IstiodSource struct {
	// Addr is istiod's secure gRPC address, e.g. "istiod.istio-system.svc:15012".
	Addr string
	// RootCertFile holds the PEM roots that sign istiod's serving
	// certificate: the istio-ca-root-cert ConfigMap's root-cert.pem, mounted.
	// It is read on every Fetch, as the mounted ConfigMap may change.
	RootCertFile string
	// TokenFile is the projected service-account token, read on every
	// Fetch because the kubelet rotates it.
	TokenFile string
	// ServerName verifies istiod's certificate; default DefaultServerName.
	ServerName string
	// ClusterID is sent as the ClusterID metadata; default DefaultClusterID.
	ClusterID string
	// TTL is the lifetime asked for; default DefaultTTL. istiod may cap it.
	TTL time.Duration
}

// Fetch implements Source: a new P-256 key, a CSR for it, one
// CreateCertificate call on a connection of its own (a call every few hours
// does not justify keeping one open), and a Bundle whose roots are
// RootCertFile's certificates plus the root ending istiod's chain.
func (s *IstiodSource) Fetch(ctx context.Context) (*Bundle, error) {
	fileRoots, err := os.ReadFile(s.RootCertFile)
	if err != nil {
		return nil, fmt.Errorf("identity: istiod root file: %w", err)
	}
	token, err := s.token()
	if err != nil {
		return nil, err
	}
	key, csrPEM, err := newKeyAndCSR()
	if err != nil {
		return nil, err
	}
	chain, err := s.createCertificate(ctx, fileRoots, token, csrPEM)
	if err != nil {
		return nil, fmt.Errorf("identity: istiod %s: %w", s.Addr, err)
	}
	present, root := splitRoot(chain)
	return NewBundle(present, key, bytes.Join([][]byte{fileRoots, root}, []byte("\n")))
}

func (s *IstiodSource) token() (string, error) {
	b, err := os.ReadFile(s.TokenFile)
	if err != nil {
		return "", fmt.Errorf("identity: token file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("identity: token file %s is empty", s.TokenFile)
	}
	return token, nil
}

// newKeyAndCSR returns a PEM private key and a CSR for it. The CSR has no
// SAN: istiod takes the identity from the token, not from the request.
func newKeyAndCSR() (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), nil
}

// createCertificate makes the call and returns the chain istiod sent, one
// PEM string per element: leaf, intermediates..., root.
func (s *IstiodSource) createCertificate(ctx context.Context, rootsPEM []byte, token string, csrPEM []byte) ([]string, error) {
	creds, err := s.transportCredentials(rootsPEM)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx,
		"authorization", "Bearer "+token,
		"ClusterID", cmp.Or(s.ClusterID, DefaultClusterID))
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx,
		&securityv1alpha1.IstioCertificateRequest{
			Csr:              string(csrPEM),
			ValidityDuration: int64(cmp.Or(s.TTL, DefaultTTL) / time.Second),
		})
	if err != nil {
		return nil, fmt.Errorf("CreateCertificate: %w", err)
	}
	if len(resp.GetCertChain()) == 0 {
		return nil, fmt.Errorf("CreateCertificate: empty certificate chain")
	}
	return resp.GetCertChain(), nil
}

func (s *IstiodSource) transportCredentials(rootsPEM []byte) (credentials.TransportCredentials, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootsPEM) {
		return nil, fmt.Errorf("no certificate in root file %s", s.RootCertFile)
	}
	return credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
		ServerName: cmp.Or(s.ServerName, DefaultServerName),
	}), nil
}

// splitRoot separates the chain to present from the root that ends it.
// A chain of one element is a leaf alone, never a root to trust.
func splitRoot(chain []string) (present, root []byte) {
	var b bytes.Buffer
	for i, c := range chain {
		if i == len(chain)-1 && i > 0 {
			root = []byte(c)
			break
		}
		b.WriteString(c)
		if !strings.HasSuffix(c, "\n") {
			b.WriteByte('\n') // elements may lack the newline that separates PEM blocks
		}
	}
	return b.Bytes(), root
}
