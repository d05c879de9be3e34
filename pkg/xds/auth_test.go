package xds_test

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
	"github.com/rosetta-mesh/rosetta/pkg/xds/xdstest"
)

// testdata/namespaces.yaml has one service per namespace, visible in its
// own namespace only.
const (
	alphaURI      = "spiffe://cluster.local/ns/alpha/sa/proxy"
	betaURI       = "spiffe://cluster.local/ns/beta/sa/proxy"
	controllerURI = "spiffe://cluster.local/ns/rosetta-system/sa/rosetta-controller"
	alphaListener = "greeter.alpha.svc.cluster.local_20880"
	betaListener  = "greeter.beta.svc.cluster.local_20880"
	// servingName is the DNS name of the plain serving certificate.
	servingName = "rosetta-controller.rosetta-system.svc"
)

func namespacesDir(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "namespaces.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "namespaces.yaml"), string(data))
	return dir
}

// listeners lists the listener names of every set rec received.
func (r *recorder) listeners() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, set := range r.sets {
		for _, l := range set.Listeners {
			if !slices.Contains(out, l.GetName()) {
				out = append(out, l.GetName())
			}
		}
	}
	return out
}

// onlyGets waits for rec to receive want and checks that no set it
// received had notWant, also for a while after.
func onlyGets(t *testing.T, rec *recorder, want, notWant string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "listener "+want, func() bool { return slices.Contains(rec.listeners(), want) })
	time.Sleep(200 * time.Millisecond) // a wrong push would come with the right one
	if got := rec.listeners(); slices.Contains(got, notWant) {
		t.Fatalf("the proxy got %v, including %s", got, notWant)
	}
}

// metric returns the value of the counter name with label=value ("" for
// an unlabelled counter), 0 when it is not there.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
			if label == "" && len(m.GetLabel()) == 0 {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// mtlsController serves testdata/namespaces.yaml over TLS with a mesh
// certificate of ca, authenticating proxies by their certificates.
func mtlsController(t *testing.T, ca *xdstest.CA) (*controllerProc, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := startControllerWith(t, namespacesDir(t), "", xds.Options{
		Registerer:     reg,
		TLS:            xds.ServerTLS(xds.WorkloadCerts(ca.Workload(t, controllerURI)), true),
		Authenticators: []xds.Authenticator{xds.CertAuthenticator{}},
	})
	return c, reg
}

// presenting is xdstest.Presenting for a test.
func presenting(t *testing.T, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	cfg, err := xdstest.Presenting(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("the stream got a response; want %v", want)
	}
	if got := status.Code(err); got != want {
		t.Fatalf("the stream ended with %v; want %v", err, want)
	}
}

// TestMTLSNamespaceFromCertificate: a proxy whose certificate is of
// namespace alpha gets alpha's config and nothing of beta's, though its
// node metadata claims beta; the claim is counted. Also over delta.
func TestMTLSNamespaceFromCertificate(t *testing.T) {
	ca := xdstest.NewCA(t, "mesh")
	c, reg := mtlsController(t, ca)
	rec := &recorder{}
	startClientWith(t, client.Options{Address: c.addr, NodeID: "alpha-proxy", Namespace: "beta",
		Identity: ca.Workload(t, alphaURI), ControllerIDs: []string{controllerURI}}, rec)
	onlyGets(t, rec, alphaListener, betaListener)
	if n := metric(t, reg, "rosetta_xds_claim_mismatches_total", "field", "namespace"); n != 1 {
		t.Errorf("namespace mismatches = %v, want 1", n)
	}

	// The delta protocol goes through the same authentication.
	certPEM, keyPEM := ca.Mesh(t, betaURI)
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(credentials.NewTLS(presenting(t, certPEM, keyPEM))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := structpb.NewStruct(map[string]any{"namespace": "alpha"})
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: config.ListenerType, Node: &corev3.Node{Id: "delta-beta", Metadata: meta}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range resp.GetResources() {
		names = append(names, r.GetName())
	}
	if !slices.Equal(names, []string{betaListener}) {
		t.Fatalf("a delta stream with beta's certificate claiming alpha got %v, want only %s", names, betaListener)
	}
}

// TestMTLSRefusals: a client without a certificate is refused with
// Unauthenticated; one with a certificate of another CA fails the
// handshake; neither becomes a proxy. Each refusal is counted.
func TestMTLSRefusals(t *testing.T) {
	ca, other := xdstest.NewCA(t, "mesh"), xdstest.NewCA(t, "other")
	c, reg := mtlsController(t, ca)

	_, err := xdstest.Listeners(c.addr, presenting(t, nil, nil), nil, "anonymous", "alpha")
	wantCode(t, err, codes.Unauthenticated)
	if n := metric(t, reg, "rosetta_xds_streams_refused_total", "reason", "no_credentials"); n != 1 {
		t.Errorf("refused for no credentials = %v, want 1", n)
	}

	certPEM, keyPEM := other.Mesh(t, alphaURI)
	_, err = xdstest.Listeners(c.addr, presenting(t, certPEM, keyPEM), nil, "impostor", "alpha")
	wantCode(t, err, codes.Unavailable) // the handshake failed: no stream at all
	// With TLS 1.3 the client is done with its side before the server
	// has checked the client's certificate, so the count may come after.
	testutil.Eventually(t, 5*time.Second, "the failed handshake to be counted", func() bool {
		return metric(t, reg, "rosetta_xds_tls_handshake_failures_total", "", "") >= 1
	})

	// The proxy's own client does not get in either.
	rec := &recorder{}
	startClientWith(t, client.Options{Address: c.addr, NodeID: "impostor-2", Identity: other.Workload(t, alphaURI)}, rec)
	time.Sleep(500 * time.Millisecond)
	if _, n := rec.last(); n != 0 || len(c.srv.Nodes()) != 0 {
		t.Fatalf("a proxy of another CA got %d sets; connected: %v", n, c.srv.Nodes())
	}
}

// TestNodeIDs: a node id in use by a proxy of another namespace is
// refused (both would share a snapshot), and so is a stream that changes
// its node id after the first request.
func TestNodeIDs(t *testing.T) {
	ca := xdstest.NewCA(t, "mesh")
	c, reg := mtlsController(t, ca)
	rec := &recorder{}
	startClientWith(t, client.Options{Address: c.addr, NodeID: "shared", Namespace: "alpha",
		Identity: ca.Workload(t, alphaURI)}, rec)
	testutil.Eventually(t, 10*time.Second, "the first proxy", func() bool { return slices.Contains(rec.listeners(), alphaListener) })

	certPEM, keyPEM := ca.Mesh(t, betaURI)
	_, err := xdstest.Listeners(c.addr, presenting(t, certPEM, keyPEM), nil, "shared", "alpha")
	wantCode(t, err, codes.PermissionDenied)
	if n := metric(t, reg, "rosetta_xds_streams_refused_total", "reason", "node_id_conflict"); n != 1 {
		t.Errorf("refused for node id conflict = %v, want 1", n)
	}

	// A proxy of the same namespace and identity may share the id (a
	// restarted proxy whose old stream is not closed yet).
	certPEM, keyPEM = ca.Mesh(t, alphaURI)
	names, err := xdstest.Listeners(c.addr, presenting(t, certPEM, keyPEM), nil, "shared", "beta")
	if err != nil || !slices.Equal(names, []string{alphaListener}) {
		t.Fatalf("the same identity under the same id: %v, %v", names, err)
	}

	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(credentials.NewTLS(presenting(t, certPEM, keyPEM))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"first-id", "second-id"} {
		if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: config.ListenerType, Node: &corev3.Node{Id: id}}); err != nil {
			t.Fatal(err)
		}
	}
	for {
		if _, err = stream.Recv(); err != nil {
			break
		}
	}
	wantCode(t, err, codes.InvalidArgument)
}

// tokenReviews is a fake API server's TokenReview: tokens maps a token
// to "NS:SA", valid for audience "rosetta" only; calls counts reviews.
func tokenReviews(tokens map[string]string, calls *atomic.Int64) *fake.Clientset {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		sa, ok := tokens[tr.Spec.Token]
		if !ok || !slices.Contains(tr.Spec.Audiences, "rosetta") {
			tr.Status = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
			return true, tr, nil
		}
		tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"rosetta"},
			User: authenticationv1.UserInfo{Username: "system:serviceaccount:" + sa,
				Groups: []string{"system:serviceaccounts", "system:authenticated"}}}
		return true, tr, nil
	})
	return cs
}

// tokenController serves testdata/namespaces.yaml over TLS with a plain
// serving certificate (files) and authenticates proxies by token. It
// returns the CA file that verifies it.
func tokenController(t *testing.T, dir, addr string, reviews *fake.Clientset) (*controllerProc, *prometheus.Registry, string) {
	t.Helper()
	ca := xdstest.NewCA(t, "serving")
	certPEM, keyPEM := ca.Serving(t, servingName)
	reg := prometheus.NewRegistry()
	certs := &xds.FileCerts{CertFile: xdstest.WriteFile(t, "tls.crt", certPEM), KeyFile: xdstest.WriteFile(t, "tls.key", keyPEM)}
	c := startControllerWith(t, dir, addr, xds.Options{
		Registerer:     reg,
		TLS:            xds.ServerTLS(certs, false),
		Authenticators: []xds.Authenticator{xds.NewTokenReviewer(xds.TokenReviewOptions{Client: reviews, Registerer: reg})},
	})
	return c, reg, xdstest.WriteFile(t, "ca.crt", ca.RootPEM())
}

// TestTokenNamespace: a proxy with alpha's token gets alpha's config and
// nothing of beta's, though it claims beta; a second proxy with the same
// token is answered from the cache; an invalid token and no token are
// refused with Unauthenticated.
func TestTokenNamespace(t *testing.T) {
	var calls atomic.Int64
	reviews := tokenReviews(map[string]string{"alpha-token": "alpha:proxy", "beta-token": "beta:proxy"}, &calls)
	c, reg, caFile := tokenController(t, namespacesDir(t), "", reviews)
	token := xdstest.WriteFile(t, "token", []byte("alpha-token\n"))

	rec := &recorder{}
	startClientWith(t, client.Options{Address: c.addr, NodeID: "alpha-1", Namespace: "beta",
		CAFile: caFile, ServerName: servingName, TokenFile: token}, rec)
	onlyGets(t, rec, alphaListener, betaListener)
	rec2 := &recorder{}
	startClientWith(t, client.Options{Address: c.addr, NodeID: "alpha-2", Namespace: "alpha",
		CAFile: caFile, ServerName: servingName, TokenFile: token}, rec2)
	onlyGets(t, rec2, alphaListener, betaListener)
	if n := calls.Load(); n != 1 {
		t.Errorf("%d token reviews for two proxies with one token, want 1", n)
	}
	if n := metric(t, reg, "rosetta_xds_token_reviews_total", "result", "cached"); n != 1 {
		t.Errorf("cached reviews = %v, want 1", n)
	}

	trusting := &tls.Config{InsecureSkipVerify: true}
	_, err := xdstest.Listeners(c.addr, trusting, metadata.Pairs("authorization", "Bearer forged"), "forged", "alpha")
	wantCode(t, err, codes.Unauthenticated)
	_, err = xdstest.Listeners(c.addr, trusting, nil, "anonymous", "alpha")
	wantCode(t, err, codes.Unauthenticated)
	for reason, want := range map[string]float64{"invalid_token": 1, "no_credentials": 1} {
		if n := metric(t, reg, "rosetta_xds_streams_refused_total", "reason", reason); n != want {
			t.Errorf("refused for %s = %v, want %v", reason, n, want)
		}
	}
}

// TestTokenReadOnReconnect: the proxy reads its token file again when it
// reconnects, so a rotated token is used (here one of another namespace,
// to see it).
func TestTokenReadOnReconnect(t *testing.T) {
	var calls atomic.Int64
	reviews := tokenReviews(map[string]string{"alpha-token": "alpha:proxy", "beta-token": "beta:proxy"}, &calls)
	dir := namespacesDir(t)
	c, _, caFile := tokenController(t, dir, "", reviews)
	token := xdstest.WriteFile(t, "token", []byte("alpha-token"))
	rec := &recorder{}
	startClientWith(t, client.Options{Address: c.addr, NodeID: "rotating", CAFile: caFile, ServerName: servingName, TokenFile: token}, rec)
	testutil.Eventually(t, 10*time.Second, "alpha's config", func() bool { r, _ := rec.last(); return hasListener(r, alphaListener) })

	c.stop()
	writeFile(t, token, "beta-token")
	c2, _, caFile2 := tokenController(t, dir, c.addr, reviews)
	// The new controller has a new serving CA: the client reads CAFile
	// again on reconnect too.
	data, err := os.ReadFile(caFile2)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, caFile, string(data))
	testutil.Eventually(t, 10*time.Second, "beta's config after the reconnect", func() bool { r, _ := rec.last(); return hasListener(r, betaListener) })
	if r, _ := rec.last(); hasListener(r, alphaListener) {
		t.Fatal("after the reconnect with beta's token the proxy still has alpha's listener")
	}
	if nodes := c2.srv.Nodes(); !slices.Equal(nodes, []string{"rotating"}) {
		t.Fatalf("connected: %v", nodes)
	}
}

func hasListener(res config.Resources, name string) bool {
	for _, l := range res.Listeners {
		if l.GetName() == name {
			return true
		}
	}
	return false
}

// TestClientNeedsTLSForToken: a token is never sent in plaintext.
func TestClientNeedsTLSForToken(t *testing.T) {
	err := client.Run(context.Background(), client.Options{Address: "127.0.0.1:1", NodeID: "x", TokenFile: "/dev/null"},
		func(config.Resources) error { return nil })
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a token and no TLS = %v, want a refusal", err)
	}
}
