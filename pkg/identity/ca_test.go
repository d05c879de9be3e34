package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// The certificate helpers panic rather than take a testing.TB: they also
// run on the rotation goroutine (issuingSource), where t.Fatal must not be
// called, and they fail only if crypto/rand does.

// testCA is a certificate authority made in the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// backdate is how far before now certificates start, so that a clock read a
// moment later never finds them not yet valid.
const backdate = time.Minute

func newTestCA(name string) *testCA {
	key := newKey()
	tmpl := caTemplate(name)
	return &testCA{cert: sign(tmpl, tmpl, key.Public(), key), key: key}
}

// intermediate returns a CA signed by ca.
func (ca *testCA) intermediate(name string) *testCA {
	key := newKey()
	return &testCA{cert: sign(caTemplate(name), ca.cert, key.Public(), ca.key), key: key}
}

func caTemplate(name string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{Organization: []string{name}},
		NotBefore:             time.Now().Add(-backdate),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// issue signs a workload certificate for pub with uri as its URI SAN (none
// when empty), valid for at least ttl from now, for server and client auth
// as istiod issues them. Certificates hold whole seconds, so NotAfter is
// rounded up: truncated, a 2-second certificate could have 1 second left.
func (ca *testCA) issue(pub crypto.PublicKey, uri string, ttl time.Duration) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		NotBefore:    time.Now().Add(-backdate),
		NotAfter:     time.Now().Add(ttl).Truncate(time.Second).Add(time.Second),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if uri != "" {
		tmpl.URIs = []*url.URL{must(url.Parse(uri))}
	}
	return sign(tmpl, ca.cert, pub, ca.key)
}

// serving signs a server certificate for pub with the DNS name dns, as
// istiod's own serving certificate has.
func (ca *testCA) serving(pub crypto.PublicKey, dns string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		NotBefore:    time.Now().Add(-backdate),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{dns},
	}
	return sign(tmpl, ca.cert, pub, ca.key)
}

// leaf returns a new key and a certificate for uri, both PEM.
func (ca *testCA) leaf(uri string, ttl time.Duration) (certPEM, keyPEM []byte) {
	key := newKey()
	return certPEMOf(ca.issue(key.Public(), uri, ttl)), keyPEMOf(key)
}

func (ca *testCA) pem() []byte { return certPEMOf(ca.cert) }

func newKey() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) }

func newSerial() *big.Int {
	return must(rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)))
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	return must(x509.ParseCertificate(must(x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key))))
}

func certPEMOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEMOf(key *ecdsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(key))})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// writeFile writes data to name in dir and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// issuingSource is a Source that signs a new certificate for id on every
// Fetch, as a CA does; Fetch fails while fail is set.
type issuingSource struct {
	ca      *testCA
	id      string
	ttl     time.Duration
	fail    atomic.Bool
	fetches atomic.Int64
}

var errTestCA = errors.New("test CA is down")

func (s *issuingSource) Fetch(context.Context) (*Bundle, error) {
	s.fetches.Add(1)
	if s.fail.Load() {
		return nil, errTestCA
	}
	certPEM, keyPEM := s.ca.leaf(s.id, s.ttl)
	return NewBundle(certPEM, keyPEM, s.ca.pem())
}

// staticSource returns the same bundle on every Fetch.
type staticSource struct{ b *Bundle }

func (s staticSource) Fetch(context.Context) (*Bundle, error) { return s.b, nil }

// bundleFor returns a bundle for uri signed by ca, trusting roots.
func bundleFor(t testing.TB, ca *testCA, uri string, roots []byte) *Bundle {
	t.Helper()
	certPEM, keyPEM := ca.leaf(uri, time.Hour)
	b, err := NewBundle(certPEM, keyPEM, roots)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startWorkload starts a Workload on src until the test ends.
func startWorkload(t testing.TB, src Source) *Workload {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := NewWorkload(src, quietLog)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))
