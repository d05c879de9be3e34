package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// fakeCA implements istiod's certificate service the way istiod does: the
// bearer token names the identity, the CSR only lends its key, and the
// chain comes back as leaf, intermediate, root.
type fakeCA struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer
	root, signer *identitytest.CA
	tokens       map[string]string // token to SPIFFE ID

	mu  sync.Mutex
	ttl []int64 // ValidityDuration of each request
}

func (f *fakeCA) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("clusterid"); len(got) != 1 || got[0] != "Kubernetes" {
		return nil, status.Errorf(codes.InvalidArgument, "ClusterID metadata %q, want Kubernetes", got)
	}
	auth := md.Get("authorization")
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
		return nil, status.Error(codes.Unauthenticated, "no bearer token")
	}
	id, ok := f.tokens[strings.TrimPrefix(auth[0], "Bearer ")]
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "authenticate: token not valid")
	}
	block, _ := pem.Decode([]byte(req.GetCsr()))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, status.Error(codes.InvalidArgument, "CSR is not PEM")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CSR: %v", err)
	}
	f.mu.Lock()
	f.ttl = append(f.ttl, req.GetValidityDuration())
	f.mu.Unlock()
	leaf := f.signer.Issue(csr.PublicKey, id, time.Duration(req.GetValidityDuration())*time.Second)
	return &securityv1alpha1.IstioCertificateResponse{
		CertChain: []string{string(identitytest.CertPEM(leaf)), string(f.signer.PEM()), string(f.root.PEM())},
	}, nil
}

func (f *fakeCA) ttls() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.ttl...)
}

// istiodFixture is a fake istiod serving fakeCA over TLS on a loopback
// port, and the files a proxy would have mounted.
type istiodFixture struct {
	ca                   *fakeCA
	addr                 string
	dir, rootFile, token string
}

func newIstiod(t *testing.T) *istiodFixture {
	t.Helper()
	root := identitytest.NewCA("istio-ca")
	ca := &fakeCA{root: root, signer: root.Intermediate("istio-ca-intermediate"), tokens: map[string]string{
		"token-greeter": "spiffe://cluster.local/ns/shop/sa/greeter",
		"token-cart":    "spiffe://cluster.local/ns/shop/sa/cart",
	}}
	key := identitytest.NewKey()
	serving := root.Serving(key.Public(), DefaultServerName)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serving.Raw}, PrivateKey: key}},
	})))
	securityv1alpha1.RegisterIstioCertificateServiceServer(srv, ca)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }() // Serve returns when Stop closes the listener
	t.Cleanup(srv.Stop)
	dir := t.TempDir()
	return &istiodFixture{
		ca: ca, addr: ln.Addr().String(), dir: dir,
		rootFile: writeFile(t, dir, "root-cert.pem", root.PEM()),
		token:    writeFile(t, dir, "istio-token", []byte("token-greeter\n")),
	}
}

func (f *istiodFixture) source() *IstiodSource {
	return &IstiodSource{Addr: f.addr, RootCertFile: f.rootFile, TokenFile: f.token}
}

func TestIstiodSource(t *testing.T) {
	f := newIstiod(t)
	src := f.source()
	b, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := (ID{"cluster.local", "shop", "greeter"}); b.ID != want {
		t.Errorf("ID = %v, want %v", b.ID, want)
	}
	if got := f.ca.ttls(); len(got) != 1 || got[0] != int64(DefaultTTL/time.Second) {
		t.Errorf("ValidityDuration asked = %v, want [%d]", got, int64(DefaultTTL/time.Second))
	}
	// Presented: leaf and intermediate; trusted: the root, once, though it
	// is both in the root file and at the end of istiod's chain.
	if len(b.Cert.Certificate) != 2 || !b.Cert.Leaf.Equal(must(x509.ParseCertificate(b.Cert.Certificate[0]))) {
		t.Errorf("Cert has %d certificates, want leaf and intermediate", len(b.Cert.Certificate))
	}
	if string(b.RootsPEM) != string(f.ca.root.PEM()) {
		t.Errorf("RootsPEM = %q, want the root once", b.RootsPEM)
	}
	if b.Cert.Leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm = %v, want ECDSA", b.Cert.Leaf.PublicKeyAlgorithm)
	}
}

func TestIstiodSourceTTL(t *testing.T) {
	f := newIstiod(t)
	src := f.source()
	src.TTL = time.Hour
	b, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := f.ca.ttls(); len(got) != 1 || got[0] != 3600 {
		t.Errorf("ValidityDuration asked = %v, want [3600]", got)
	}
	if left := time.Until(b.NotAfter); left > time.Hour+time.Second || left < 59*time.Minute {
		t.Errorf("certificate expires in %v, want about an hour", left)
	}
}

func TestIstiodSourceRereadsToken(t *testing.T) {
	f := newIstiod(t)
	src := f.source()
	for _, tc := range []struct{ token, sa string }{{"token-greeter", "greeter"}, {"token-cart", "cart"}, {"token-greeter", "greeter"}} {
		writeFile(t, f.dir, "istio-token", []byte(tc.token))
		b, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if b.ID.ServiceAccount != tc.sa {
			t.Errorf("with %s: ID = %v, want service account %s", tc.token, b.ID, tc.sa)
		}
	}
}

func TestIstiodSourceRefusals(t *testing.T) {
	f := newIstiod(t)
	other := identitytest.NewCA("not-istio")
	for _, tc := range []struct {
		name    string
		edit    func(*IstiodSource)
		code    codes.Code // codes.OK: not a gRPC status
		wantErr string
	}{
		{"bad token", func(s *IstiodSource) {
			s.TokenFile = writeFile(t, t.TempDir(), "istio-token", []byte("stolen"))
		}, codes.Unauthenticated, "token not valid"},
		{"empty token", func(s *IstiodSource) {
			s.TokenFile = writeFile(t, t.TempDir(), "istio-token", []byte("\n"))
		}, codes.OK, "is empty"},
		{"missing token file", func(s *IstiodSource) { s.TokenFile = f.dir + "/nope" }, codes.OK, "identity: token file"},
		{"wrong cluster", func(s *IstiodSource) { s.ClusterID = "remote" }, codes.InvalidArgument, "ClusterID"},
		{"istiod not trusted", func(s *IstiodSource) {
			s.RootCertFile = writeFile(t, t.TempDir(), "root-cert.pem", other.PEM())
		}, codes.Unavailable, "certificate signed by unknown authority"},
		{"wrong server name", func(s *IstiodSource) { s.ServerName = "istiod.elsewhere.svc" }, codes.Unavailable, "istiod.elsewhere.svc"},
		{"nobody listening", func(s *IstiodSource) { s.Addr = closedAddr(t) }, codes.Unavailable, "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := f.source()
			tc.edit(src)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err := src.Fetch(ctx)
			if err == nil || !strings.HasPrefix(err.Error(), "identity: ") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Fetch error = %v, want one with %q", err, tc.wantErr)
			}
			if tc.code != codes.OK && status.Code(err) != tc.code {
				t.Errorf("gRPC code = %v, want %v (error %v)", status.Code(err), tc.code, err)
			}
		})
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
