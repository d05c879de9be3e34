package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/xds/xdstest"
)

// streamCtx is the context of a stream from 127.0.0.1 over TLS (or
// plaintext) whose metadata is md.
func streamCtx(secure bool, md metadata.MD) context.Context {
	p := &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242}}
	if secure {
		p.AuthInfo = credentials.TLSInfo{State: tls.ConnectionState{HandshakeComplete: true}}
	}
	return metadata.NewIncomingContext(peer.NewContext(context.Background(), p), md)
}

func bearer(token string) context.Context {
	return streamCtx(true, metadata.Pairs("authorization", "Bearer "+token))
}

// jwt is a token shaped like a JWT whose payload is claims; only its exp
// is ever read without the API server.
func jwt(claims string) string {
	return "e30." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".sig"
}

// reviewerWith is a TokenReviewer on a fake API server that answers with
// answer(token, audiences) (a nil status is an API error), and a clock
// the test moves.
func reviewerWith(t *testing.T, opts TokenReviewOptions, answer func(token string, audiences []string) *authenticationv1.TokenReviewStatus) (*TokenReviewer, *atomic.Int64, *time.Time) {
	t.Helper()
	var calls atomic.Int64
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		st := answer(tr.Spec.Token, tr.Spec.Audiences)
		if st == nil {
			return true, nil, errors.New("the API server is down")
		}
		tr.Status = *st
		return true, tr, nil
	})
	opts.Client = cs
	r := NewTokenReviewer(opts)
	now := time.Unix(1_900_000_000, 0)
	r.now = func() time.Time { return now }
	return r, &calls, &now
}

// serviceAccounts accepts "NS:SA..." tokens (anything after a dot is
// ignored) for audience "rosetta" as that service account.
func serviceAccounts(token string, audiences []string) *authenticationv1.TokenReviewStatus {
	if strings.HasPrefix(token, "down") {
		return nil
	}
	sa, _, _ := strings.Cut(token, ".")
	if strings.HasPrefix(token, "e30.") { // a JWT: alpha's
		sa = "alpha:proxy"
	}
	if !strings.Contains(sa, ":") || len(audiences) != 1 || audiences[0] != DefaultTokenAudience {
		return &authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
	}
	return &authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: audiences,
		User: authenticationv1.UserInfo{Username: "system:serviceaccount:" + sa, Groups: []string{"system:serviceaccounts"}}}
}

func refusedWith(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	var r *refusal
	if !errors.As(err, &r) || r.reason != reason || status.Code(err) != code {
		t.Fatalf("err = %v; want a %v refusal for %s", err, code, reason)
	}
}

func TestTokenReviewer(t *testing.T) {
	r, calls, _ := reviewerWith(t, TokenReviewOptions{}, serviceAccounts)

	p, err := r.Authenticate(bearer("alpha:proxy"))
	if err != nil || p != (Principal{Namespace: "alpha", ServiceAccount: "proxy", Method: MethodToken}) {
		t.Fatalf("a valid token: %+v, %v", p, err)
	}
	if _, err := r.Authenticate(streamCtx(true, nil)); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("no token: %v, want ErrNoCredentials", err)
	}
	if _, err := r.Authenticate(streamCtx(true, metadata.Pairs("authorization", "Basic YTpi"))); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("a Basic authorization: %v, want ErrNoCredentials", err)
	}
	before := calls.Load()
	_, err = r.Authenticate(streamCtx(false, metadata.Pairs("authorization", "Bearer alpha:proxy")))
	refusedWith(t, err, codes.Unauthenticated, reasonInvalidToken)
	if calls.Load() != before {
		t.Fatal("a token over plaintext was reviewed")
	}
	_, err = r.Authenticate(bearer("forged"))
	refusedWith(t, err, codes.Unauthenticated, reasonInvalidToken)
	_, err = r.Authenticate(bearer("down"))
	refusedWith(t, err, codes.Unavailable, reasonReviewUnavailable)
}

// TestTokenReviewerChecksTheAnswer: what istiod also checks of an
// authenticated review: the audience came back, the user is a service
// account.
func TestTokenReviewerChecksTheAnswer(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   authenticationv1.TokenReviewStatus
	}{
		{"no audience back", authenticationv1.TokenReviewStatus{Authenticated: true,
			User: authenticationv1.UserInfo{Username: "system:serviceaccount:a:b", Groups: []string{"system:serviceaccounts"}}}},
		{"another audience", authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"istio-ca"},
			User: authenticationv1.UserInfo{Username: "system:serviceaccount:a:b", Groups: []string{"system:serviceaccounts"}}}},
		{"a user", authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"rosetta"},
			User: authenticationv1.UserInfo{Username: "alice", Groups: []string{"system:authenticated"}}}},
		{"a service account name outside the group", authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"rosetta"},
			User: authenticationv1.UserInfo{Username: "system:serviceaccount:a:b", Groups: []string{"system:authenticated"}}}},
		{"a malformed service account", authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"rosetta"},
			User: authenticationv1.UserInfo{Username: "system:serviceaccount:a", Groups: []string{"system:serviceaccounts"}}}},
		{"not authenticated", authenticationv1.TokenReviewStatus{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, _ := reviewerWith(t, TokenReviewOptions{}, func(string, []string) *authenticationv1.TokenReviewStatus { return &tc.st })
			_, err := r.Authenticate(bearer("t"))
			refusedWith(t, err, codes.Unauthenticated, reasonInvalidToken)
		})
	}
}

// TestTokenReviewCache: answers are reused for CacheTTL, refusals for a
// tenth of it, never past the token's exp; API errors are not cached; the
// cache keeps CacheSize answers, the newest.
func TestTokenReviewCache(t *testing.T) {
	r, calls, now := reviewerWith(t, TokenReviewOptions{CacheTTL: time.Minute, CacheSize: 3}, serviceAccounts)
	// reviews authenticates with token and checks how many reviews that
	// made: 0 when answered from the cache.
	reviews := func(token string, want int64, why string) {
		t.Helper()
		before := calls.Load()
		_, _ = r.Authenticate(bearer(token))
		if got := calls.Load() - before; got != want {
			t.Fatalf("%s: %d reviews, want %d", why, got, want)
		}
	}
	reviews("alpha:proxy", 1, "a new token")
	reviews("alpha:proxy", 0, "the same token again")
	*now = now.Add(59 * time.Second)
	reviews("alpha:proxy", 0, "within the TTL")
	*now = now.Add(time.Second)
	reviews("alpha:proxy", 1, "after the TTL")

	reviews("forged", 1, "a refused token")
	reviews("forged", 0, "the refused token again")
	*now = now.Add(6 * time.Second)
	reviews("forged", 1, "the refused token after a tenth of the TTL")

	reviews("down", 1, "an API error")
	reviews("down", 1, "after an API error")

	expiring := jwt(fmt.Sprintf(`{"exp":%d,"sub":"system:serviceaccount:alpha:proxy"}`, now.Add(10*time.Second).Unix()))
	reviews(expiring, 1, "a JWT")
	reviews(expiring, 0, "the JWT again")
	*now = now.Add(10 * time.Second)
	reviews(expiring, 1, "the JWT at its expiry")

	// Bounded: three answers; a fourth token pushes out the oldest.
	r.mu.Lock()
	clear(r.cache)
	r.order.Init()
	r.mu.Unlock()
	for _, tok := range []string{"a:1", "a:2", "a:3", "a:4"} {
		reviews(tok, 1, tok)
	}
	if len(r.cache) != 3 || r.order.Len() != 3 {
		t.Fatalf("%d answers cached, want 3", len(r.cache))
	}
	reviews("a:4", 0, "the newest answer")
	reviews("a:2", 0, "the second oldest answer")
	reviews("a:1", 1, "the oldest answer, dropped")
}

func TestTokenExpiry(t *testing.T) {
	for _, tc := range []struct {
		token string
		want  int64 // 0: none
	}{
		{jwt(`{"exp":1900000000}`), 1900000000},
		{jwt(`{"exp":1.9e9}`), 1900000000},
		{jwt(`{"sub":"x"}`), 0},
		{jwt(`not json`), 0},
		{"opaque", 0},
		{"a.!!!.c", 0},
	} {
		got, ok := tokenExpiry(tc.token)
		if (tc.want == 0) == ok || (ok && got.Unix() != tc.want) {
			t.Errorf("tokenExpiry(%q) = %v, %v; want %d", tc.token, got, ok, tc.want)
		}
	}
}

// TestCertAuthenticator: the identity of a verified certificate; no
// certificate is no credentials; an unverified one or one without a
// SPIFFE ID is refused.
func TestCertAuthenticator(t *testing.T) {
	ca := xdstest.NewCA(t, "mesh")
	leaf := func(certPEM []byte) *x509.Certificate {
		block, _ := pem.Decode(certPEM)
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	mesh, _ := ca.Mesh(t, "spiffe://cluster.local/ns/alpha/sa/proxy")
	serving, _ := ca.Serving(t, "x.test")
	ctxOf := func(cs tls.ConnectionState) context.Context {
		cs.HandshakeComplete = true
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: cs}})
	}
	verified := func(c *x509.Certificate) tls.ConnectionState {
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}
	}

	p, err := CertAuthenticator{}.Authenticate(ctxOf(verified(leaf(mesh))))
	want := Principal{Namespace: "alpha", ServiceAccount: "proxy", Method: MethodMTLS,
		ID: identity.ID{TrustDomain: "cluster.local", Namespace: "alpha", ServiceAccount: "proxy"}}
	if err != nil || p != want {
		t.Fatalf("a verified mesh certificate: %+v, %v", p, err)
	}
	if _, err := (CertAuthenticator{}).Authenticate(ctxOf(tls.ConnectionState{})); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("no certificate: %v", err)
	}
	if _, err := (CertAuthenticator{}).Authenticate(streamCtx(false, nil)); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("plaintext: %v", err)
	}
	_, err = CertAuthenticator{}.Authenticate(ctxOf(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf(mesh)}}))
	refusedWith(t, err, codes.Unauthenticated, reasonInvalidCertificate)
	_, err = CertAuthenticator{}.Authenticate(ctxOf(verified(leaf(serving))))
	refusedWith(t, err, codes.Unauthenticated, reasonInvalidCertificate)
}
