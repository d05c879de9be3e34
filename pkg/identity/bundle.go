package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"
)

// Source supplies certificates; implementations: istiod's CA (IstiodSource)
// and files (FileSource).
type Source interface {
	// Fetch returns a fresh certificate chain+key and the trust roots.
	Fetch(ctx context.Context) (*Bundle, error)
}

// Bundle is one workload certificate with the roots that verify peers.
// It is never modified once made: rotation installs a new one.
type Bundle struct {
	Cert     tls.Certificate // leaf first, with Leaf parsed
	Roots    *x509.CertPool
	RootsPEM []byte // the roots of Roots, PEM-encoded, each once
	ID       ID     // from the leaf
	// NotAfter is the earliest expiry in Cert's chain: a peer refuses the
	// chain once any of its certificates has expired, not only the leaf.
	NotAfter time.Time
}

// NewBundle makes a Bundle from PEM: the chain to present (leaf first,
// then intermediates), its private key, and the trust roots. It fails when
// the key does not match the leaf, the leaf has no SPIFFE ID, or the chain
// does not verify against the roots now: a bundle that peers would refuse
// is caught where it is made, not at the first handshake.
func NewBundle(chainPEM, keyPEM, rootsPEM []byte) (*Bundle, error) {
	cert, err := tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity: certificate and key: %w", err)
	}
	chain, err := x509.ParseCertificates(bytes.Join(cert.Certificate, nil))
	if err != nil {
		return nil, fmt.Errorf("identity: certificate chain: %w", err)
	}
	cert.Leaf = chain[0]
	id, err := leafID(cert.Leaf)
	if err != nil {
		return nil, err
	}
	roots, err := parseRoots(rootsPEM)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Cert: cert, Roots: x509.NewCertPool(), RootsPEM: encodeCerts(roots), ID: id}
	for _, r := range roots {
		b.Roots.AddCert(r)
	}
	if err := verifyChain(chain, b.Roots, x509.ExtKeyUsageAny); err != nil {
		return nil, fmt.Errorf("identity: %s: %w", id, err)
	}
	b.NotAfter = earliestExpiry(chain)
	return b, nil
}

// parseRoots decodes every CERTIFICATE block, dropping repeats (a root in
// both the mounted root file and istiod's chain).
func parseRoots(rootsPEM []byte) ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	for rest := rootsPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("identity: trust root: %w", err)
		}
		if !containsCert(roots, c) {
			roots = append(roots, c)
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("identity: no trust root certificate in PEM")
	}
	return roots, nil
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, have := range certs {
		if have.Equal(c) {
			return true
		}
	}
	return false
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}) // a bytes.Buffer does not fail
	}
	return buf.Bytes()
}

// verifyChain checks that chain (leaf first) leads to one of roots now.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	if len(chain) == 0 {
		return fmt.Errorf("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	return err
}

func earliestExpiry(chain []*x509.Certificate) time.Time {
	t := chain[0].NotAfter
	for _, c := range chain[1:] {
		if c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// FileSource reads what istio-agent (OUTPUT_CERTS) or cert-manager write:
// the certificate chain, its key and the roots, as PEM files. The files are
// read again on every Fetch, so a writer that replaces them is followed.
type FileSource struct{ CertFile, KeyFile, RootFile string }

// Fetch implements Source.
func (s *FileSource) Fetch(context.Context) (*Bundle, error) {
	chain, err := os.ReadFile(s.CertFile)
	if err != nil {
		return nil, fmt.Errorf("identity: certificate file: %w", err)
	}
	key, err := os.ReadFile(s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("identity: key file: %w", err)
	}
	roots, err := os.ReadFile(s.RootFile)
	if err != nil {
		return nil, fmt.Errorf("identity: root file: %w", err)
	}
	return NewBundle(chain, key, roots)
}

// Interface guards.
var (
	_ Source = (*FileSource)(nil)
	_ Source = (*IstiodSource)(nil)
)
