package identity

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		uri     string
		want    ID
		wantErr string // part of the error; empty means success
	}{
		{uri: "spiffe://cluster.local/ns/default/sa/greeter", want: ID{"cluster.local", "default", "greeter"}},
		{uri: "spiffe://td_1-x/ns/My.NS/sa/a-b_c", want: ID{"td_1-x", "My.NS", "a-b_c"}},
		{uri: "", wantErr: "scheme must be"},
		{uri: "https://cluster.local/ns/a/sa/b", wantErr: "scheme must be"},
		{uri: "SPIFFE://cluster.local/ns/a/sa/b", wantErr: "scheme must be"},
		{uri: "spiffe:/cluster.local/ns/a/sa/b", wantErr: "scheme must be"},
		{uri: "spiffe://cluster.local", wantErr: "path must be"},
		{uri: "spiffe://cluster.local/ns/a", wantErr: "path must be"},
		{uri: "spiffe://cluster.local/ns/a/sa/b/", wantErr: "path must be"},
		{uri: "spiffe://cluster.local/ns/a/sa/b/c", wantErr: "path must be"},
		{uri: "spiffe://cluster.local/sa/b/ns/a", wantErr: "path must be"},
		{uri: "spiffe://cluster.local/namespace/a/sa/b", wantErr: "path must be"},
		{uri: "spiffe:///ns/a/sa/b", wantErr: "trust domain is empty"},
		{uri: "spiffe://Cluster.Local/ns/a/sa/b", wantErr: `trust domain "Cluster.Local" has character 'C'`},
		{uri: "spiffe://cluster.local:443/ns/a/sa/b", wantErr: "has character ':'"},
		{uri: "spiffe://user@cluster.local/ns/a/sa/b", wantErr: "has character '@'"},
		{uri: "spiffe://cluster.local/ns//sa/b", wantErr: `namespace "" is not a name`},
		{uri: "spiffe://cluster.local/ns/../sa/b", wantErr: `namespace ".." is not a name`},
		{uri: "spiffe://cluster.local/ns/a/sa/", wantErr: `service account "" is not a name`},
		{uri: "spiffe://cluster.local/ns/a%2Fb/sa/c", wantErr: "has character '%'"},
		{uri: "spiffe://cluster.local/ns/a/sa/b?x=1", wantErr: "has character '?'"},
		{uri: "spiffe://cluster.local/ns/a/sa/b#f", wantErr: "has character '#'"},
		{uri: "spiffe://cluster.local/ns/a b/sa/c", wantErr: "has character ' '"},
	} {
		got, err := ParseID(tc.uri)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "identity: ") {
				t.Errorf("ParseID(%q) = %v, %v; want an error with %q", tc.uri, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseID(%q) = %v, %v; want %v", tc.uri, got, err, tc.want)
			continue
		}
		if got.String() != tc.uri {
			t.Errorf("ParseID(%q).String() = %q", tc.uri, got.String())
		}
	}
}

func TestIDForms(t *testing.T) {
	id := ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "cart"}
	if got, want := id.String(), "spiffe://cluster.local/ns/shop/sa/cart"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := id.Principal(), "cluster.local/ns/shop/sa/cart"; got != want {
		t.Errorf("Principal() = %q, want %q", got, want)
	}
}

func TestPeerID(t *testing.T) {
	leaf := func(uris ...string) *x509.Certificate {
		c := &x509.Certificate{}
		for _, u := range uris {
			c.URIs = append(c.URIs, must(url.Parse(u)))
		}
		return c
	}
	state := func(c *x509.Certificate) tls.ConnectionState {
		return tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{c}}
	}
	want := ID{"cluster.local", "a", "b"}
	for _, tc := range []struct {
		name string
		cs   tls.ConnectionState
		ok   bool
	}{
		{"spiffe SAN", state(leaf("spiffe://cluster.local/ns/a/sa/b")), true},
		{"first spiffe SAN after others", state(leaf("https://example.com/x", "spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/c/sa/d")), true},
		{"no URI SAN", state(leaf()), false},
		{"malformed spiffe SAN", state(leaf("spiffe://cluster.local/a/b")), false},
		{"no peer certificate", tls.ConnectionState{HandshakeComplete: true}, false},
		{"handshake not done", tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf("spiffe://cluster.local/ns/a/sa/b")}}, false},
	} {
		got, ok := PeerID(tc.cs)
		if ok != tc.ok || ok && got != want {
			t.Errorf("%s: PeerID = %v, %v; want %v, %v", tc.name, got, ok, want, tc.ok)
		}
	}
}

func TestNewBundle(t *testing.T) {
	root := identitytest.NewCA("root")
	inter := root.Intermediate("intermediate")
	key := identitytest.NewKey()
	leaf := inter.Issue(key.Public(), "spiffe://cluster.local/ns/a/sa/b", time.Hour)
	chain := append(identitytest.CertPEM(leaf), inter.PEM()...)
	b, err := NewBundle(chain, identitytest.KeyPEM(key), append(root.PEM(), root.PEM()...))
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != (ID{"cluster.local", "a", "b"}) {
		t.Errorf("ID = %v", b.ID)
	}
	if !b.Cert.Leaf.Equal(leaf) || len(b.Cert.Certificate) != 2 {
		t.Errorf("Cert has leaf %v and %d certificates, want the leaf and 2", b.Cert.Leaf.Subject, len(b.Cert.Certificate))
	}
	if !b.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("NotAfter = %v, want the leaf's %v", b.NotAfter, leaf.NotAfter)
	}
	if string(b.RootsPEM) != string(root.PEM()) {
		t.Errorf("RootsPEM = %q, want the root once", b.RootsPEM)
	}
}

func TestNewBundleRefuses(t *testing.T) {
	ca, other := identitytest.NewCA("ca"), identitytest.NewCA("other")
	good, goodKey := ca.Leaf("spiffe://cluster.local/ns/a/sa/b", time.Hour)
	_, otherKey := ca.Leaf("spiffe://cluster.local/ns/a/sa/b", time.Hour)
	noID, noIDKey := ca.Leaf("", time.Hour)
	expired, expiredKey := ca.Leaf("spiffe://cluster.local/ns/a/sa/b", -time.Minute)
	for _, tc := range []struct {
		name              string
		chain, key, roots []byte
		wantErr           string
	}{
		{"key of another certificate", good, otherKey, ca.PEM(), "certificate and key"},
		{"no spiffe SAN", noID, noIDKey, ca.PEM(), "no spiffe URI SAN"},
		{"another CA's roots", good, goodKey, other.PEM(), "unknown authority"},
		{"no roots", good, goodKey, []byte("not PEM"), "no trust root"},
		{"expired", expired, expiredKey, ca.PEM(), "expired"},
	} {
		_, err := NewBundle(tc.chain, tc.key, tc.roots)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "identity: ") {
			t.Errorf("%s: NewBundle error = %v, want one with %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestFileSource(t *testing.T) {
	ca := identitytest.NewCA("ca")
	dir := t.TempDir()
	certPEM, keyPEM := ca.Leaf("spiffe://cluster.local/ns/a/sa/b", time.Hour)
	src := &FileSource{
		CertFile: writeFile(t, dir, "cert-chain.pem", certPEM),
		KeyFile:  writeFile(t, dir, "key.pem", keyPEM),
		RootFile: writeFile(t, dir, "root-cert.pem", ca.PEM()),
	}
	b, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if b.ID.Principal() != "cluster.local/ns/a/sa/b" {
		t.Errorf("ID = %v", b.ID)
	}

	// Files are read again on every Fetch.
	certPEM, keyPEM = ca.Leaf("spiffe://cluster.local/ns/a/sa/c", time.Hour)
	writeFile(t, dir, "cert-chain.pem", certPEM)
	writeFile(t, dir, "key.pem", keyPEM)
	if b, err = src.Fetch(t.Context()); err != nil || b.ID.ServiceAccount != "c" {
		t.Errorf("after rewrite: Fetch = %v, %v; want service account c", b, err)
	}

	src.RootFile = dir + "/missing.pem"
	if _, err := src.Fetch(t.Context()); err == nil || !strings.Contains(err.Error(), "identity: root file") ||
		!strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing root file: err = %v", err)
	}
}
