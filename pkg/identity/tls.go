package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// ALPN values of Istio mutual TLS. Envoy sidecars offer
// "istio-peer-exchange" and "istio" (ALPNInMeshWithMxc in Istio's pilot);
// selecting "istio-peer-exchange" obliges the server to speak Istio's
// metadata exchange, which we do not. Go's crypto/tls picks the server's
// first protocol the client offers, so ServerALPN, the list Istio's inbound
// mTLS filter chains match (allIstioMtlsALPNs), keeps "istio" first; the
// client offers only "istio".
var (
	ServerALPN = []string{"istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"}
	ClientALPN = []string{"istio"}
)

var errNoIdentity = errors.New("identity: no certificate yet")

// ServerConfig returns the TLS config of an Istio mTLS server: TLS 1.2+,
// our current certificate, a client certificate required and verified
// against the current roots (the chain only: authorization decides who may
// call, from PeerID), ALPN ServerALPN. The certificate and roots are looked
// up per handshake, so rotation applies to new connections.
func ServerConfig(w *Workload) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: ServerALPN,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			b := w.Current()
			if b == nil {
				return nil, errNoIdentity
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   ServerALPN,
				Certificates: []tls.Certificate{b.Cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    b.Roots,
				// A resumed session would skip checking the client's chain
				// against the roots of the day; connections are long-lived,
				// so full handshakes cost little.
				SessionTicketsDisabled: true,
			}, nil
		},
	}
}

// ClientConfig returns the TLS config of an Istio mTLS client: our current
// certificate as client certificate, the server's chain verified against the
// current roots, and its SPIFFE ID one of sans (exact spiffe:// URIs, as
// Istio's subjectAltNames or the endpoint's service account give them); with
// no sans, any identity in our own trust domain. sni is sent as the server
// name (Istio uses "outbound_.PORT_.SUBSET_.HOST"); ALPN is ClientALPN.
func ClientConfig(w *Workload, sans []string, sni string) *tls.Config {
	allowed := slices.Clone(sans)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: sni,
		NextProtos: ClientALPN,
		// Go's own check would match sni against DNS SANs, which mesh
		// certificates do not have. VerifyConnection does the whole check
		// instead, chain included; Go calls it on every handshake, resumed
		// or not, and no session cache is set so there is no resumption.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(w.Current(), cs, allowed)
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			b := w.Current()
			if b == nil {
				return nil, errNoIdentity
			}
			return &b.Cert, nil
		},
	}
}

// verifyServer checks the server's chain against b's roots, then its
// SPIFFE ID against sans.
func verifyServer(b *Bundle, cs tls.ConnectionState, sans []string) error {
	if b == nil {
		return errNoIdentity
	}
	if err := verifyChain(cs.PeerCertificates, b.Roots, x509.ExtKeyUsageServerAuth); err != nil {
		return fmt.Errorf("identity: server certificate: %w", err)
	}
	id, err := leafID(cs.PeerCertificates[0])
	if err != nil {
		return fmt.Errorf("identity: server certificate: %w", err)
	}
	if len(sans) == 0 {
		if id.TrustDomain != b.ID.TrustDomain {
			return fmt.Errorf("identity: server %s is not in trust domain %q", id, b.ID.TrustDomain)
		}
		return nil
	}
	if !slices.Contains(sans, id.String()) {
		return fmt.Errorf("identity: server %s is none of %v", id, sans)
	}
	return nil
}
