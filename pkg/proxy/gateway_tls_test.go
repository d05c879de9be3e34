package proxy_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// The SDS names the controller gives a Gateway credential, as Istio does.
const (
	edgeCert   = "kubernetes://edge/edge-cert"
	edgeCACert = "kubernetes://edge/edge-cert-cacert"
	edgeHost   = "edge.example.com"
)

// servingPair is a server certificate for edgeHost from ca, PEM, and its
// serial number.
func servingPair(ca *identitytest.CA) (chain, key []byte, serial *big.Int) {
	k := identitytest.NewKey()
	leaf := ca.Serving(k.Public(), edgeHost)
	return identitytest.CertPEM(leaf), identitytest.KeyPEM(k), leaf.SerialNumber
}

// clientPair is a client certificate from ca with the URI SAN uri (none
// when empty).
func clientPair(t *testing.T, ca *identitytest.CA, uri string) *tls.Certificate {
	t.Helper()
	chain, key := ca.Leaf(uri, time.Hour)
	c, err := tls.X509KeyPair(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func certSecret(name string, chain, key []byte) obj {
	return obj{"name": name, "tls_certificate": obj{"certificate_chain": obj{"inline_bytes": chain}, "private_key": obj{"inline_bytes": key}}}
}

func caSecret(name string, ca []byte) obj {
	return obj{"name": name, "validation_context": obj{"trusted_ca": obj{"inline_bytes": ca}}}
}

// ownTLS gives a listener the one filter chain the controller writes for
// a Gateway server with a credentialName: SIMPLE, or MUTUAL with ca.
func ownTLS(l obj, cert, ca string) obj {
	common := obj{"tls_certificate_sds_secret_configs": []obj{{"name": cert}}}
	ctx := obj{"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", "common_tls_context": common}
	if ca != "" {
		common["validation_context_sds_secret_config"] = obj{"name": ca}
		ctx["require_client_certificate"] = true
	}
	l["filter_chains"].([]obj)[0]["transport_socket"] = obj{"name": "envoy.transport_sockets.tls", "typed_config": ctx}
	return l
}

// gatewayConfig is a listener "gw" with its own TLS in front of the toy
// server at upstream, with secrets.
func gatewayConfig(t *testing.T, upstream, ca string, policies []obj, secrets ...obj) string {
	t.Helper()
	var extra obj
	if policies != nil {
		extra = obj{"authorization": policies}
	}
	b, err := json.Marshal(obj{
		"listeners": []obj{ownTLS(listener("gw", "r", extra), edgeCert, ca)},
		"routes":    []obj{routeConfig("r", route("all", nil, obj{"cluster": "c"}))},
		"clusters":  []obj{cluster("c", "", upstream)},
		"secrets":   secrets,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// edgeClient is what a client outside the mesh uses: it trusts roots, and
// presents cert when there is one.
func edgeClient(roots *x509.CertPool, cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: roots, ServerName: edgeHost}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func pool(ca *identitytest.CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// tlsCall dials addr over TLS and makes one toy call; err is the
// handshake's or the call's (with TLS 1.3 a refused client certificate
// shows in the first read).
func tlsCall(t *testing.T, addr string, cfg *tls.Config, headers map[string]string) (*toy.Response, *tls.Conn, error) {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, nil, err
	}
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	c := toy.NewClient(tc)
	t.Cleanup(func() { c.Close() })
	r, err := c.Call(headers, []byte("x"))
	if err == nil {
		err = r.Err()
	}
	return r, tc, err
}

// TestGatewaySimpleTLS: a listener with its own certificate (a Gateway
// server's SIMPLE mode) terminates TLS 1.2+ with it, on a proxy without a
// workload identity, and serves the calls through to its upstream;
// plaintext and TLS 1.1 are refused.
func TestGatewaySimpleTLS(t *testing.T) {
	ca := identitytest.NewCA("edge")
	chain, key, serial := servingPair(ca)
	srv, hits := named(t, "upstream")
	p := proxytest.Start(t, gatewayConfig(t, srv.Addr(), "", nil, certSecret(edgeCert, chain, key)))
	addr := p.Addr(t, "gw")

	r, tc, err := tlsCall(t, addr, edgeClient(pool(ca), nil), map[string]string{"method": "hi"})
	if err != nil {
		t.Fatalf("a TLS call: %v", err)
	}
	if r.Headers["server"] != "upstream" || string(r.Body) != "x" {
		t.Errorf("answered %+v, want the upstream's echo", r)
	}
	cs := tc.ConnectionState()
	if got := cs.PeerCertificates[0].SerialNumber; got.Cmp(serial) != 0 || cs.Version < tls.VersionTLS12 || cs.NegotiatedProtocol != "" {
		t.Errorf("served certificate %x, version %x, ALPN %q; want %x, TLS 1.2+, none", got, cs.Version, cs.NegotiatedProtocol, serial)
	}
	old := edgeClient(pool(ca), nil)
	old.MaxVersion = tls.VersionTLS11
	if _, _, err := tlsCall(t, addr, old, nil); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	if r, err := dial(t, addr).Call(map[string]string{"method": "hi"}, []byte("x")); err == nil {
		t.Errorf("a plaintext call was answered: %+v", r)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the upstream got %d calls, want 1", n)
	}
	testutil.Eventually(t, 5*time.Second, "the connections counted", func() bool {
		m := p.Get(t, "/metrics")
		return strings.Contains(m, `rosetta_downstream_connections_total{listener="gw",transport="tls"} 1`) &&
			strings.Contains(m, `rosetta_downstream_tls_handshake_errors_total{listener="gw"} 2`)
	})
}

// TestGatewayMutualTLS: with a client CA (MUTUAL), a client without a
// certificate or with another CA's is refused, one with the CA's is
// served; its SPIFFE URI SAN is the principal policies see, and a
// certificate without one has no principal.
func TestGatewayMutualTLS(t *testing.T) {
	serverCA, clientCA := identitytest.NewCA("edge"), identitytest.NewCA("partners")
	chain, key, _ := servingPair(serverCA)
	srv, hits := named(t, "upstream")
	policies := []obj{{"name": "edge/partners", "action": "ALLOW", "rules": []obj{{"from": []obj{{"principals": []string{"cluster.local/ns/shop/sa/frontend"}}}}}}}
	p := proxytest.Start(t, gatewayConfig(t, srv.Addr(), edgeCACert, policies,
		certSecret(edgeCert, chain, key), caSecret(edgeCACert, clientCA.PEM())))
	addr := p.Addr(t, "gw")
	roots := pool(serverCA)

	for name, cert := range map[string]*tls.Certificate{
		"no certificate":       nil,
		"another CA's":         clientPair(t, identitytest.NewCA("strangers"), callerID),
		"the server CA's leaf": clientPair(t, serverCA, callerID),
	} {
		if r, _, err := tlsCall(t, addr, edgeClient(roots, cert), map[string]string{"method": "hi"}); err == nil {
			t.Errorf("%s: answered %+v", name, r)
		}
	}
	if r, _, err := tlsCall(t, addr, edgeClient(roots, clientPair(t, clientCA, callerID)), map[string]string{"method": "hi"}); err != nil || r.Headers["server"] != "upstream" {
		t.Errorf("a client with the CA's certificate: %+v, %v", r, err)
	}
	r, _, err := tlsCall(t, addr, edgeClient(roots, clientPair(t, clientCA, "")), map[string]string{"method": "hi"})
	if r == nil || statusOf(r) != codec.StatusUnauthorized.String() {
		t.Errorf("a client certificate without a SPIFFE ID: %+v, %v; want %s (no principal)", r, err, codec.StatusUnauthorized)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the upstream got %d calls, want 1", n)
	}
	testutil.Eventually(t, 5*time.Second, "the connections counted", func() bool {
		m := p.Get(t, "/metrics")
		return strings.Contains(m, `rosetta_downstream_connections_total{listener="gw",transport="mtls"} 2`) &&
			strings.Contains(m, `rosetta_downstream_tls_handshake_errors_total{listener="gw"} 3`)
	})
}

// TestGatewayCertificateRotation: a config update with a new certificate
// in the secret serves it to new handshakes while open connections keep
// theirs; an update with a broken secret is refused and the last good
// certificate stays.
func TestGatewayCertificateRotation(t *testing.T) {
	ca := identitytest.NewCA("edge")
	srv, _ := named(t, "upstream")
	chain1, key1, serial1 := servingPair(ca)
	chain2, key2, serial2 := servingPair(ca)
	p := proxytest.Start(t, gatewayConfig(t, srv.Addr(), "", nil, certSecret(edgeCert, chain1, key1)))
	addr := p.Addr(t, "gw")
	cfg := edgeClient(pool(ca), nil)

	servedSerial := func() *big.Int {
		t.Helper()
		_, tc, err := tlsCall(t, addr, cfg, nil)
		if err != nil {
			t.Fatalf("a TLS call: %v", err)
		}
		return tc.ConnectionState().PeerCertificates[0].SerialNumber
	}
	if got := servedSerial(); got.Cmp(serial1) != 0 {
		t.Fatalf("serial %x, want %x", got, serial1)
	}
	open, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	openClient := toy.NewClient(open)
	defer openClient.Close()

	apply := func(cfg string) error {
		t.Helper()
		boot, err := config.Parse([]byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		return p.Apply(boot.Resources)
	}
	if err := apply(gatewayConfig(t, srv.Addr(), "", nil, certSecret(edgeCert, chain2, key2))); err != nil {
		t.Fatalf("rotation: %v", err)
	}
	if got := servedSerial(); got.Cmp(serial2) != 0 {
		t.Errorf("after the rotation, serial %x, want %x", got, serial2)
	}
	if got := answeredBy(t, openClient, nil); got != "upstream" {
		t.Errorf("the connection open before the rotation: answered by %q", got)
	}
	if got := open.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(serial1) != 0 {
		t.Errorf("the open connection's certificate %x, want %x", got, serial1)
	}

	err = apply(gatewayConfig(t, srv.Addr(), "", nil, certSecret(edgeCert, chain2, key1)))
	if want := `listeners[0] (gw): filter_chains[0].transport_socket: common_tls_context.tls_certificate_sds_secret_configs[0]: secret "` + edgeCert + `": tls_certificate: certificate_chain and private_key do not make a certificate and key pair`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a certificate with another's key: %v, want %q", err, want)
	}
	if got := servedSerial(); got.Cmp(serial2) != 0 {
		t.Errorf("after a refused update, serial %x, want %x (the last good one)", got, serial2)
	}
}

// TestGatewayTLSConfigDump: /config_dump names a listener's certificate
// secrets and shows neither the key nor the chain.
func TestGatewayTLSConfigDump(t *testing.T) {
	serverCA, clientCA := identitytest.NewCA("edge"), identitytest.NewCA("partners")
	chain, key, _ := servingPair(serverCA)
	srv, _ := named(t, "upstream")
	p := proxytest.Start(t, gatewayConfig(t, srv.Addr(), edgeCACert, nil,
		certSecret(edgeCert, chain, key), caSecret(edgeCACert, clientCA.PEM())))
	dump := strings.Join(strings.Fields(p.Get(t, "/config_dump")), "")
	for _, leak := range []string{base64.StdEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(key)[:40], base64.StdEncoding.EncodeToString(chain)[:40], "PRIVATEKEY"} {
		if strings.Contains(dump, leak) {
			t.Errorf("/config_dump shows %q:\n%s", leak, dump)
		}
	}
	for _, want := range []string{`{"name":"` + edgeCert + `"}`, `{"name":"` + edgeCACert + `"}`, `"tlsCertificateSdsSecretConfigs":[{"name":"` + edgeCert + `"}]`} {
		if !strings.Contains(dump, want) {
			t.Errorf("/config_dump lacks %s:\n%s", want, dump)
		}
	}
}

// TestGatewayTLSRefused: a config whose listener names a secret it lacks,
// has TLS chains with different certificates, or gives its own
// certificate to a listener reached only through HBONE, is refused with
// the listener and the field (and the secret) named.
func TestGatewayTLSRefused(t *testing.T) {
	ca := identitytest.NewCA("edge")
	chain, key, _ := servingPair(ca)
	srv, _ := named(t, "upstream")

	err := applyJSON(t, gatewayConfig(t, srv.Addr(), edgeCACert, nil, certSecret(edgeCert, chain, key)))
	if want := `listeners[0] (gw): filter_chains[0].transport_socket: common_tls_context.validation_context_sds_secret_config.name: no secret named "` + edgeCACert + `"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a missing CA secret: %v, want %q", err, want)
	}
	err = applyJSON(t, gatewayConfig(t, srv.Addr(), "", nil))
	if want := `listeners[0] (gw): filter_chains[0].transport_socket: common_tls_context.tls_certificate_sds_secret_configs[0].name: no secret named "` + edgeCert + `"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a missing certificate secret: %v, want %q", err, want)
	}

	// Two TLS chains with different certificates: which would a client get?
	l := ownTLS(listener("gw", "r", nil), edgeCert, "")
	chains := l["filter_chains"].([]obj)
	second := ownTLS(listener("gw", "r", nil), "kubernetes://edge/other-cert", "")["filter_chains"].([]obj)[0]
	l["filter_chains"] = append(chains, second)
	b, err := json.Marshal(obj{
		"listeners": []obj{l},
		"routes":    []obj{routeConfig("r", route("all", nil, obj{"cluster": "c"}))},
		"clusters":  []obj{cluster("c", "", srv.Addr())},
		"secrets":   []obj{certSecret(edgeCert, chain, key), certSecret("kubernetes://edge/other-cert", chain, key)},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = applyJSON(t, string(b))
	if want := "listeners[0] (gw): filter_chains[1].transport_socket: must equal filter_chains[0]'s (one TLS setting per listener)"; err == nil || err.Error() != want {
		t.Errorf("two TLS chains with different certificates: %v, want %q", err, want)
	}

	l = ownTLS(listener("gw", "r", obj{"authorities": []string{"10.96.0.9:9443"}}), edgeCert, "")
	delete(l, "address")
	b, err = json.Marshal(obj{
		"listeners": []obj{l},
		"routes":    []obj{routeConfig("r", route("all", nil, obj{"cluster": "c"}))},
		"clusters":  []obj{cluster("c", "", srv.Addr())},
		"secrets":   []obj{certSecret(edgeCert, chain, key)},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = applyJSON(t, string(b))
	if want := "listeners[0] (gw): filter_chains[0].transport_socket: a listener's own certificate needs address.socket_address"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("own TLS on a listener without an address: %v, want %q", err, want)
	}
}
