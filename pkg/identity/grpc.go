package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// GRPCClientConfig is the TLS config of a gRPC client of a control-plane
// service (the controller, an OTLP collector): with caFile empty, Istio
// mutual TLS with w, the server's SPIFFE ID one of ids (any of our trust
// domain when none); with caFile, the server's certificate verified
// against the PEM roots in caFile for serverName, as any TLS server's,
// presenting w's certificate when w is set. gRPC offers its own ALPN (h2),
// so Istio's mesh values are left out. caFile is read on each call.
func GRPCClientConfig(w *Workload, ids []string, caFile, serverName string) (*tls.Config, error) {
	if caFile == "" {
		if w == nil {
			return nil, fmt.Errorf("identity: Istio mutual TLS needs a workload identity")
		}
		cfg := ClientConfig(w, ids, serverName)
		cfg.NextProtos = nil
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("identity: CA file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("identity: CA file %s: no certificate", caFile)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: serverName}
	if w != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			b := w.Current()
			if b == nil {
				return nil, errNoIdentity
			}
			return &b.Cert, nil
		}
	}
	return cfg, nil
}
