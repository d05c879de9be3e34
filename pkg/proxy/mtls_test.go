package proxy_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

const (
	waypointID = "spiffe://cluster.local/ns/demo/sa/rosetta-waypoint"
	callerID   = "spiffe://cluster.local/ns/shop/sa/frontend"
	strangerID = "spiffe://cluster.local/ns/other/sa/intruder"
	providerID = "spiffe://cluster.local/ns/demo/sa/greeter"
)

// workload is an identity signed by ca, from files as istio-agent writes
// them, started for the test's life.
func workload(t *testing.T, ca *identitytest.CA, id string) *identity.Workload {
	t.Helper()
	dir := t.TempDir()
	cert, key := ca.Leaf(id, time.Hour)
	for name, data := range map[string][]byte{"cert-chain.pem": cert, "key.pem": key, "root-cert.pem": ca.PEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w := identity.NewWorkload(&identity.FileSource{
		CertFile: filepath.Join(dir, "cert-chain.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
		RootFile: filepath.Join(dir, "root-cert.pem"),
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

// mtlsProvider is a toy server behind Istio mTLS (as a provider's sidecar
// would terminate it) that records who called it.
type mtlsProvider struct {
	srv   *toy.Server
	mu    sync.Mutex
	peers []string
}

func startMTLSProvider(t *testing.T, w *identity.Workload, name string) *mtlsProvider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mp := &mtlsProvider{}
	mp.srv = toy.ServeListener(&handshakingListener{Listener: ln, cfg: identity.ServerConfig(w), seen: mp.saw}, func(r *toy.Request) *toy.Response {
		return &toy.Response{Headers: map[string]string{"server": name}, Body: r.Body}
	})
	t.Cleanup(mp.srv.Close)
	return mp
}

func (mp *mtlsProvider) saw(id string) {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	mp.peers = append(mp.peers, id)
}

func (mp *mtlsProvider) callers() []string {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	return append([]string(nil), mp.peers...)
}

// handshakingListener completes each TLS handshake in Accept and reports the
// peer's SPIFFE ID.
type handshakingListener struct {
	net.Listener
	cfg  *tls.Config
	seen func(string)
}

func (l *handshakingListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(nc, l.cfg)
		if err := tc.Handshake(); err != nil {
			nc.Close()
			continue
		}
		id, _ := identity.PeerID(tc.ConnectionState())
		l.seen(id.String())
		return tc, nil
	}
}

func mtlsDial(t *testing.T, w *identity.Workload, addr string) (*toy.Client, error) {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, identity.ClientConfig(w, []string{waypointID}, ""))
	if err != nil {
		return nil, err
	}
	c := toy.NewClient(tc)
	t.Cleanup(func() { c.Close() })
	return c, nil
}

func tlsChain(match string) obj {
	return obj{
		"filter_chain_match": obj{"transport_protocol": match},
		"transport_socket": obj{"name": "envoy.transport_sockets.tls", "typed_config": obj{
			"@type":                      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
			"require_client_certificate": true,
			"common_tls_context": obj{
				"tls_certificate_sds_secret_configs":   []obj{{"name": "default"}},
				"validation_context_sds_secret_config": obj{"name": "ROOTCA"},
			},
		}},
	}
}

// secured gives a listener Istio's inbound chains: STRICT (TLS only) or
// PERMISSIVE (TLS, then plaintext), each with the listener's filter.
func secured(l obj, permissive bool) obj {
	filters := l["filter_chains"].([]obj)[0]["filters"]
	chain := tlsChain("tls")
	chain["filters"] = filters
	chains := []obj{chain}
	if permissive {
		chains = append(chains, obj{"filter_chain_match": obj{"transport_protocol": "raw_buffer"}, "filters": filters})
	}
	l["filter_chains"] = chains
	return l
}

// autoMTLS gives a cluster Istio's auto-mTLS socket matches and marks its
// first endpoint as having a sidecar (tlsMode=istio).
func autoMTLS(c obj, san string) obj {
	c["transport_socket_matches"] = []obj{
		{"name": "tlsMode-istio", "match": obj{"tlsMode": "istio"}, "transport_socket": obj{"name": "envoy.transport_sockets.tls", "typed_config": obj{
			"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
			"sni":   "outbound_.20880_._.greeter.demo.svc.cluster.local",
			"common_tls_context": obj{
				"alpn_protocols":                     []string{"istio"},
				"tls_certificate_sds_secret_configs": []obj{{"name": "default"}},
				"combined_validation_context": obj{
					"default_validation_context":           obj{"match_typed_subject_alt_names": []obj{{"san_type": "URI", "matcher": obj{"exact": san}}}},
					"validation_context_sds_secret_config": obj{"name": "ROOTCA"},
				},
			},
		}}},
		{"name": "tlsMode-disabled", "match": obj{}, "transport_socket": obj{"name": "envoy.transport_sockets.raw_buffer"}},
	}
	ep := c["load_assignment"].(obj)["endpoints"].([]obj)[0]["lb_endpoints"].([]obj)[0]
	ep["metadata"] = obj{"filter_metadata": obj{"envoy.transport_socket_match": obj{"tlsMode": "istio"}}}
	return c
}

func TestIstioMutualTLSBothWays(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	waypoint := workload(t, ca, waypointID)
	caller := workload(t, ca, callerID)
	secure := startMTLSProvider(t, workload(t, ca, providerID), "secure")
	plain, _ := named(t, "plain")

	cfg := configJSON(t,
		[]obj{secured(listener("permissive", "r", nil), true), secured(onLoopback2(listener("strict", "r", nil)), false)},
		[]obj{routeConfig("r",
			route("to-plain", match("to", "plain"), obj{"cluster": "plain"}),
			route("to-secure", nil, obj{"cluster": "secure"}))},
		[]obj{autoMTLS(cluster("secure", "", secure.srv.Addr()), providerID), autoMTLS(cluster("plain", "", plain.Addr()), providerID)})
	// The plaintext provider has no sidecar: its endpoint is not marked.
	p := proxytest.StartWithIdentity(t, unmarkSecond(t, cfg, plain.Addr()), waypoint)

	for _, l := range []string{"permissive", "strict"} {
		c, err := mtlsDial(t, caller, p.Addr(t, l))
		if err != nil {
			t.Fatalf("%s: mTLS dial: %v", l, err)
		}
		if got := answeredBy(t, c, map[string]string{"method": "hi"}); got != "secure" {
			t.Errorf("%s: answered by %q, want secure", l, got)
		}
		if got := answeredBy(t, c, map[string]string{"to": "plain"}); got != "plain" {
			t.Errorf("%s: answered by %q, want plain (an endpoint without a sidecar is dialled in plaintext)", l, got)
		}
	}
	if got := secure.callers(); len(got) == 0 || got[0] != waypointID {
		t.Errorf("the provider saw callers %v, want the waypoint's identity %s", got, waypointID)
	}

	// PERMISSIVE serves a plaintext caller too; STRICT refuses it.
	if got := answeredBy(t, dial(t, p.Addr(t, "permissive")), map[string]string{"method": "hi"}); got != "secure" {
		t.Errorf("plaintext on permissive: answered by %q", got)
	}
	if r, err := dial(t, p.Addr(t, "strict")).Call(map[string]string{"method": "hi"}, []byte("x")); err == nil {
		t.Errorf("plaintext on strict was answered: %+v", r)
	}
	// A caller whose certificate the mesh did not issue is refused.
	stranger := workload(t, identitytest.NewCA("other mesh"), strangerID)
	if c, err := mtlsDial(t, stranger, p.Addr(t, "strict")); err == nil {
		if r, err := c.Call(map[string]string{"method": "hi"}, []byte("x")); err == nil {
			t.Errorf("a caller from another CA was answered: %+v", r)
		}
	}
	if m := p.Get(t, "/metrics"); !strings.Contains(m, `rosetta_downstream_tls_handshake_errors_total{listener="strict"}`) {
		t.Errorf("no handshake errors counted on strict:\n%s", grepLines(m, "tls"))
	}
}

// onLoopback2 moves a listener to 127.0.0.2, so two listeners can both
// take a port the system picks.
func onLoopback2(l obj) obj {
	l["address"].(obj)["socket_address"].(obj)["address"] = "127.0.0.2"
	return l
}

// unmarkSecond removes the tlsMode mark from the endpoint at addr.
func unmarkSecond(t *testing.T, cfg, addr string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	mark := `{"endpoint":{"address":{"socket_address":{"address":"` + host + `","port_value":` + port + `}}},"metadata":{"filter_metadata":{"envoy.transport_socket_match":{"tlsMode":"istio"}}}}`
	if !strings.Contains(cfg, mark) {
		t.Fatalf("config has no marked endpoint %s: %s", addr, cfg)
	}
	return strings.Replace(cfg, mark, `{"endpoint":{"address":{"socket_address":{"address":"`+host+`","port_value":`+port+`}}}}`, 1)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestIstioMTLSWithoutIdentityIsRefused(t *testing.T) {
	res := configJSON(t, []obj{secured(listener("l", "r", nil), false)}, []obj{routeConfig("r")}, nil)
	err := applyJSON(t, res)
	if err == nil || !strings.Contains(err.Error(), "workload identity") {
		t.Fatalf("a STRICT listener on a proxy without identity: %v, want an error naming the missing identity", err)
	}
}

func TestAuthorizationPolicies(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	waypoint := workload(t, ca, waypointID)
	srv, hits := named(t, "greeter")
	policies := []obj{
		{"name": "demo/deny-intruder", "action": "DENY", "rules": []obj{{"from": []obj{{"principals": []string{"cluster.local/ns/other/sa/intruder"}}}}}},
		{"name": "demo/no-drop", "action": "DENY", "rules": []obj{{"to": []obj{{"attributes": []obj{{"name": "method", "values": []string{"drop*"}}}}}}}},
		{"name": "demo/allow-mesh", "action": "ALLOW", "rules": []obj{{"from": []obj{{"namespaces": []string{"shop", "other"}}}}}},
	}
	cfg := configJSON(t,
		[]obj{secured(listener("l", "r", obj{"authorization": policies}), true)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "c"}))},
		[]obj{cluster("c", "", srv.Addr())})
	p := proxytest.StartWithIdentity(t, cfg, waypoint)
	addr := p.Addr(t, "l")

	shop, err := mtlsDial(t, workload(t, ca, callerID), addr)
	if err != nil {
		t.Fatal(err)
	}
	if got := answeredBy(t, shop, map[string]string{"method": "keep"}); got != "greeter" {
		t.Errorf("allowed call answered by %q", got)
	}
	// One method of the service is denied; the connection stays open for
	// the next call.
	if r := call(t, shop, map[string]string{"method": "dropTable"}); statusOf(r) != codec.StatusUnauthorized.String() {
		t.Errorf("denied method: status %s, want %s", statusOf(r), codec.StatusUnauthorized)
	}
	if got := answeredBy(t, shop, map[string]string{"method": "keep"}); got != "greeter" {
		t.Errorf("call after a denied one answered by %q", got)
	}
	// DENY by principal wins over the ALLOW of its namespace.
	intruder, err := mtlsDial(t, workload(t, ca, strangerID), addr)
	if err != nil {
		t.Fatal(err)
	}
	if r := call(t, intruder, map[string]string{"method": "keep"}); statusOf(r) != codec.StatusUnauthorized.String() {
		t.Errorf("denied principal: status %s", statusOf(r))
	}
	// A plaintext caller has no namespace, so no ALLOW policy matches it.
	if r := call(t, dial(t, addr), map[string]string{"method": "keep"}); statusOf(r) != codec.StatusUnauthorized.String() {
		t.Errorf("plaintext caller: status %s", statusOf(r))
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("the server got %d calls, want the 2 allowed ones", n)
	}
	m := p.Get(t, "/metrics")
	for _, want := range []string{
		`rosetta_authorization_total{listener="l",policy="demo/no-drop",result="denied"} 1`,
		`rosetta_authorization_total{listener="l",policy="demo/deny-intruder",result="denied"} 1`,
		`rosetta_authorization_total{listener="l",policy="",result="denied"} 1`,
		`rosetta_authorization_total{listener="l",policy="demo/allow-mesh",result="allowed"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "authorization"))
		}
	}
}

func applyJSON(t *testing.T, cfg string) error {
	t.Helper()
	boot, err := config.Parse([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return proxy.New(nil).Apply(boot.Resources)
}
