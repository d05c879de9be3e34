package xds

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// CertSource gives the xDS server its serving certificate and the roots
// that verify proxies' client certificates (nil roots: none can be
// verified). It is asked on every handshake, so a rotated certificate
// applies to new connections.
type CertSource interface {
	ServingCert() (*tls.Certificate, *x509.CertPool, error)
}

// WorkloadCerts serves with the controller's own mesh identity (the
// controller runs in the mesh too: istiod or files give it a certificate
// like any workload's) and verifies proxies against the mesh roots.
func WorkloadCerts(w *identity.Workload) CertSource { return workloadCerts{w} }

type workloadCerts struct{ w *identity.Workload }

func (c workloadCerts) ServingCert() (*tls.Certificate, *x509.CertPool, error) {
	b := c.w.Current()
	if b == nil {
		return nil, nil, errors.New("xds: no workload certificate yet")
	}
	return &b.Cert, b.Roots, nil
}

// FileCerts reads a serving certificate chain and its key, and the roots
// that verify proxies' certificates when CAFile is set, from PEM files. It
// reads them again when one changes (cert-manager or a mounted Secret
// replaces them); while the new files do not load (one rewritten, not the
// other yet), it keeps serving the last pair that did, until it expires.
type FileCerts struct {
	CertFile, KeyFile, CAFile string

	mu    sync.Mutex
	stamp string
	cert  *tls.Certificate
	roots *x509.CertPool
}

// ServingCert implements CertSource.
func (f *FileCerts) ServingCert() (*tls.Certificate, *x509.CertPool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stamp, err := f.files()
	if err == nil && stamp == f.stamp && f.cert != nil {
		return f.cert, f.roots, nil
	}
	cert, roots, lerr := f.load()
	if lerr == nil && err == nil {
		f.stamp, f.cert, f.roots = stamp, cert, roots
		return cert, roots, nil
	}
	if lerr == nil {
		lerr = err
	}
	if f.cert != nil && (f.cert.Leaf == nil || time.Now().Before(f.cert.Leaf.NotAfter)) {
		return f.cert, f.roots, nil
	}
	return nil, nil, lerr
}

// files stamps the files' sizes and modification times.
func (f *FileCerts) files() (string, error) {
	stamp := ""
	for _, name := range []string{f.CertFile, f.KeyFile, f.CAFile} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return "", fmt.Errorf("xds: %w", err)
		}
		stamp += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
}

func (f *FileCerts) load() (*tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("xds: serving certificate: %w", err)
	}
	if f.CAFile == "" {
		return &cert, nil, nil
	}
	pem, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("xds: client CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("xds: client CA %s: no certificate", f.CAFile)
	}
	return &cert, roots, nil
}

// ServerTLS returns the TLS config of the xDS server: TLS 1.2+, src's
// certificate, ALPN h2 (gRPC's). With verifyClients, a client certificate
// is asked for and, when given, verified against src's roots (a chain
// that does not verify fails the handshake); whether one is required is
// the Authenticators' decision, so a proxy without one is refused with a
// gRPC status that says why. Session tickets are off, so every connection
// verifies its chain against the roots of the day.
func ServerTLS(src CertSource, verifyClients bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, roots, err := src.ServingCert()
			if err != nil {
				return nil, err
			}
			c := &tls.Config{
				MinVersion:             tls.VersionTLS12,
				NextProtos:             []string{"h2"},
				Certificates:           []tls.Certificate{*cert},
				SessionTicketsDisabled: true,
			}
			if verifyClients {
				if roots == nil {
					return nil, errors.New("xds: no roots to verify client certificates with")
				}
				c.ClientAuth = tls.VerifyClientCertIfGiven
				c.ClientCAs = roots
			}
			return c, nil
		},
	}
}

// countingCreds counts and logs the server's failed TLS handshakes (a
// client certificate from another CA, a client that does not trust ours,
// and also TCP probes that close without TLS).
type countingCreds struct {
	credentials.TransportCredentials
	failures prometheus.Counter
	log      *slog.Logger
}

func (c *countingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.failures.Inc()
		c.log.Debug("xds: TLS handshake failed", "peer", conn.RemoteAddr().String(), "err", err)
	}
	return out, info, err
}

func (c *countingCreds) Clone() credentials.TransportCredentials {
	return &countingCreds{TransportCredentials: c.TransportCredentials.Clone(), failures: c.failures, log: c.log}
}

// Interface guards.
var (
	_ CertSource                       = workloadCerts{}
	_ CertSource                       = (*FileCerts)(nil)
	_ credentials.TransportCredentials = (*countingCreds)(nil)
)
