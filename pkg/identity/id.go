// Package identity is the proxy's Istio workload identity: a SPIFFE ID
// (spiffe://<trust-domain>/ns/<ns>/sa/<sa>) with its certificate, obtained
// from istiod's CA (IstiodSource) or from files (FileSource), rotated before
// it expires (Workload), and the TLS configs that use it for Istio mutual
// TLS (ServerConfig, ClientConfig).
package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
)

// spiffePrefix starts every SPIFFE ID; SPIFFE allows only the lowercase scheme.
const spiffePrefix = "spiffe://"

// ID is a SPIFFE workload identity as Istio issues it.
type ID struct{ TrustDomain, Namespace, ServiceAccount string }

// ParseID parses "spiffe://TD/ns/NS/sa/SA", the only path shape Istio
// issues. Characters are checked against the SPIFFE spec (a trust domain is
// lowercase letters, digits, '.', '-' and '_'; path segments also allow
// uppercase) so that String gives back exactly the input.
func ParseID(uri string) (ID, error) {
	rest, ok := strings.CutPrefix(uri, spiffePrefix)
	if !ok {
		return ID{}, fmt.Errorf("identity: parse %q: scheme must be %q", uri, spiffePrefix)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" {
		return ID{}, fmt.Errorf("identity: parse %q: path must be /ns/NAMESPACE/sa/SERVICE_ACCOUNT", uri)
	}
	id := ID{TrustDomain: parts[0], Namespace: parts[2], ServiceAccount: parts[4]}
	if err := checkTrustDomain(id.TrustDomain); err != nil {
		return ID{}, fmt.Errorf("identity: parse %q: %w", uri, err)
	}
	if err := checkSegment("namespace", id.Namespace); err != nil {
		return ID{}, fmt.Errorf("identity: parse %q: %w", uri, err)
	}
	if err := checkSegment("service account", id.ServiceAccount); err != nil {
		return ID{}, fmt.Errorf("identity: parse %q: %w", uri, err)
	}
	return id, nil
}

func checkTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("trust domain is empty")
	}
	for _, c := range td {
		if !isLowerAlnum(c) && c != '.' && c != '-' && c != '_' {
			return fmt.Errorf("trust domain %q has character %q", td, c)
		}
	}
	return nil
}

func checkSegment(what, s string) error {
	if s == "" || s == "." || s == ".." {
		return fmt.Errorf("%s %q is not a name", what, s)
	}
	for _, c := range s {
		if !isLowerAlnum(c) && !('A' <= c && c <= 'Z') && c != '.' && c != '-' && c != '_' {
			return fmt.Errorf("%s %q has character %q", what, s, c)
		}
	}
	return nil
}

func isLowerAlnum(c rune) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// String returns the spiffe:// URI.
func (id ID) String() string { return spiffePrefix + id.Principal() }

// Principal returns "TD/ns/NS/sa/SA", the form of Istio's
// AuthorizationPolicy principals.
func (id ID) Principal() string {
	return id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// PeerID returns the SPIFFE ID of the peer's leaf certificate: its first
// URI SAN with scheme spiffe. It trusts the handshake to have verified the
// chain, as ServerConfig and ClientConfig do; the client side verifies in
// VerifyConnection, so VerifiedChains is empty there and the leaf is taken
// from PeerCertificates on both sides.
func PeerID(cs tls.ConnectionState) (ID, bool) {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return ID{}, false
	}
	id, err := leafID(cs.PeerCertificates[0])
	return id, err == nil
}

// leafID is the ID in the first spiffe URI SAN of cert.
func leafID(cert *x509.Certificate) (ID, error) {
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			return ParseID(u.String())
		}
	}
	return ID{}, fmt.Errorf("identity: certificate %q has no spiffe URI SAN", cert.Subject)
}
