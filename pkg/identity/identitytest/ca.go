// Package identitytest makes certificates for tests: a CA, intermediates,
// and workload leaves with SPIFFE URI SANs as istiod issues them. It depends
// on no Rosetta package, so any package's tests may use it, pkg/identity's
// own included.
//
// Its functions panic rather than take a testing.TB: they also run on
// goroutines where t.Fatal must not be called, and they fail only if
// crypto/rand does.
package identitytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"time"
)

// CA is a certificate authority made in a test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// backdate is how far before now certificates start, so that a clock read
// a moment later never finds them not yet valid.
const backdate = time.Minute

// NewCA returns a self-signed root valid for a day.
func NewCA(name string) *CA {
	key := NewKey()
	tmpl := caTemplate(name)
	return &CA{Cert: sign(tmpl, tmpl, key.Public(), key), Key: key}
}

// Intermediate returns a CA signed by ca.
func (ca *CA) Intermediate(name string) *CA {
	key := NewKey()
	return &CA{Cert: sign(caTemplate(name), ca.Cert, key.Public(), ca.Key), Key: key}
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

// Issue signs a workload certificate for pub with uri as its URI SAN (none
// when empty), valid for at least ttl from now, for server and client auth
// as istiod issues them. Certificates hold whole seconds, so NotAfter is
// rounded up: truncated, a 2-second certificate could have 1 second left.
func (ca *CA) Issue(pub crypto.PublicKey, uri string, ttl time.Duration) *x509.Certificate {
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
	return sign(tmpl, ca.Cert, pub, ca.Key)
}

// Serving signs a server certificate for pub with the DNS name dns (and
// the loopback addresses, for servers dialled by address), as istiod's own
// serving certificate has.
func (ca *CA) Serving(pub crypto.PublicKey, dns string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		NotBefore:    time.Now().Add(-backdate),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{dns},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	return sign(tmpl, ca.Cert, pub, ca.Key)
}

// Leaf returns a new key and a workload certificate for uri, both PEM.
func (ca *CA) Leaf(uri string, ttl time.Duration) (certPEM, keyPEM []byte) {
	key := NewKey()
	return CertPEM(ca.Issue(key.Public(), uri, ttl)), KeyPEM(key)
}

// PEM is the CA's certificate, PEM encoded.
func (ca *CA) PEM() []byte { return CertPEM(ca.Cert) }

// NewKey returns a new P-256 key, the kind istio-agent makes.
func NewKey() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) }

func newSerial() *big.Int {
	return must(rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)))
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	return must(x509.ParseCertificate(must(x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key))))
}

// CertPEM encodes a certificate.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// KeyPEM encodes a private key as PKCS #8.
func KeyPEM(key *ecdsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(key))})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
