package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/hbone/hbonetest"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

// hboneConfig has two Dubbo services on port 20880 of their ClusterIPs:
// greeter's listener is bound, other's has no address and is reached only
// through HBONE.
const hboneConfig = `
admin: {address: 127.0.0.1:0}
listeners:
- name: greeter
  address: {socket_address: {address: 127.0.0.1, port_value: %[1]s}}
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: dubbo
        route_config: {name: greeter, routes: [{name: all, route: {cluster: greeter}}]}
        authorities: ["10.96.0.1:20880"]
- name: other
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: dubbo
        route_config: {name: other, routes: [{name: all, route: {cluster: other}}]}
        authorities: ["10.96.0.2:20880"]
clusters:
- name: greeter
  connect_timeout: 1s
  load_assignment: {cluster_name: greeter, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[2]s}}}}]}]}
- name: other
  connect_timeout: 1s
  load_assignment: {cluster_name: other, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[3]s}}}}]}]}
`

// writeIdentity writes a workload's files as istio-agent does, for
// --identity files.
func writeIdentity(t *testing.T, ca *identitytest.CA, id string) string {
	t.Helper()
	dir := t.TempDir()
	cert, key := ca.Leaf(id, time.Hour)
	for name, data := range map[string][]byte{"cert-chain.pem": cert, "key.pem": key, "root-cert.pem": ca.PEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The binary terminates HBONE with --hbone-address: a Dubbo call through
// a CONNECT stream reaches the service the stream names, on the bound
// listener and on the one without an address alike.
func TestBinaryTerminatesHBONE(t *testing.T) {
	bin := testutil.GoBuild(t, filepath.Join("..", ".."), "./cmd/rosetta-proxy")
	providers := map[string]*dubbopeer.Provider{}
	for _, name := range []string{"greeter", "other"} {
		p, err := dubbopeer.Serve("127.0.0.1:0", name, func(ctx context.Context, r *dubbopeer.Request) (any, error) {
			return name, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		providers[name] = p
	}
	ca := identitytest.NewCA("mesh")
	px, _, admin := startBinary(t, bin, func(listen string) string {
		return fmt.Sprintf(hboneConfig, listen, port(providers["greeter"].Addr()), port(providers["other"].Addr()))
	}, "--identity", "files", "--cert-dir", writeIdentity(t, ca, "spiffe://cluster.local/ns/demo/sa/rosetta-waypoint"),
		"--hbone-address", "127.0.0.1:0")
	// The HBONE server says in its log which port it got.
	hbone, err := px.LoggedAddr(proxyWait, "terminating HBONE", "addr")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := writeIdentity(t, ca, "spiffe://cluster.local/ns/shop/sa/frontend")
	caller := identity.NewWorkload(&identity.FileSource{
		CertFile: filepath.Join(dir, "cert-chain.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
		RootFile: filepath.Join(dir, "root-cert.pem"),
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := caller.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cc, err := hbonetest.Dial(hbone, hbonetest.ClientTLS(caller))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for authority, want := range map[string]string{"10.96.0.1:20880": "greeter", "10.96.0.2:20880": "other"} {
		tn, status, err := cc.Connect(authority)
		if err != nil || status != http.StatusOK {
			t.Fatalf("CONNECT %s: %d, %v", authority, status, err)
		}
		c := dubbopeer.NewConsumer(tn)
		got, _, err := c.Call(ctx, dubbopeer.Service{Interface: "org.example.Greeter"}, "sayHello", []any{"x"}, nil)
		if err != nil || got != want {
			t.Errorf("through %s: %v, %v; want %s", authority, got, err, want)
		}
		c.Close()
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(m), "rosetta_hbone_streams_accepted_total 2") {
		t.Errorf("metrics:\n%s", m)
	}
}
