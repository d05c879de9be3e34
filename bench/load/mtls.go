package load

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

// The mesh of the mutual TLS comparison: a caller's sidecar, the proxy (a
// waypoint) and the provider's sidecar, each with a SPIFFE certificate of one
// test CA, as istiod would issue them.
const (
	callerID   = "spiffe://cluster.local/ns/shop/sa/frontend"
	proxyID    = "spiffe://cluster.local/ns/demo/sa/rosetta-waypoint"
	providerID = "spiffe://cluster.local/ns/demo/sa/echo"
)

// RunMTLS measures d's echo calls through the proxies with and without
// Istio mutual TLS, in one run, and writes the table to w. All rows use d's
// ConnDriver client and server, so they differ only in what sits between
// them and how the bytes travel:
//
//	direct                        client -> provider
//	direct, mTLS                  client =mTLS=> provider
//	rosetta                       client -> rosetta (event loops) -> provider
//	rosetta, goroutine path       the same with ROSETTA_EVENT_LOOPS=off
//	rosetta, mTLS                 client =mTLS=> rosetta =mTLS=> provider
//	rosetta, mTLS + 20 authz rules  the same, with authorization policies
//	rosetta, HBONE in, mTLS out   client =HBONE=> rosetta =mTLS=> provider, each
//	                              client a CONNECT stream, all on one HTTP/2
//	                              connection (as ztunnel pools them)
//	rosetta, HBONE in (an HTTP/2 connection per stream), mTLS out
//	                              the same, an HTTP/2 connection per client
//	haproxy (L4 TCP)              client -> haproxy -> provider
//	haproxy, TLS                  client =mTLS=> haproxy =mTLS=> provider
//
// The client's and the provider's TLS ends, Go's crypto/tls with the
// caller's and the provider's identities (configs from istio.Identity),
// and the client's HTTP/2 end of HBONE (istio.HBONE) run in this process:
// their CPU is the harness column, never the proxy's. Each proxy runs
// alone, started for its row and stopped after it.
func RunMTLS(d ConnDriver, o Options, istio Istio, w io.Writer) error {
	dir, err := os.MkdirTemp("", "rosetta-bench-mtls")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := newMesh(ctx, dir, istio.Identity)
	if err != nil {
		return err
	}
	plain, stopPlain, err := serveOn(d, o, func(ln net.Listener) net.Listener { return ln })
	if err != nil {
		return err
	}
	defer stopPlain()
	secure, stopSecure, err := serveOn(d, o, func(ln net.Listener) net.Listener {
		return tls.NewListener(ln, m.provider)
	})
	if err != nil {
		return err
	}
	defer stopSecure()

	attr, value := d.Match()
	policies := authorization(attr, value)
	rosetta := func(s proxySetup) func() (*target, error) {
		return func() (*target, error) { return startRosetta(d, o, dir, s) }
	}
	mtls := func(name string, authz []obj) proxySetup {
		return proxySetup{name: name, upstream: secure, mtlsIn: true, mtlsOut: true, certs: m.proxyDir, san: providerID, authz: authz}
	}
	hbone := func(name string) proxySetup {
		return proxySetup{name: name, upstream: secure, mtlsOut: true, hbone: true, certs: m.proxyDir, san: providerID}
	}
	rows := []mtlsRow{
		{start: reached("direct", plain), dial: dialPlain(d)},
		{start: reached("direct, mTLS", secure), dial: m.dialTLS(d, providerID)},
		{start: rosetta(proxySetup{name: "rosetta", upstream: plain}), dial: dialPlain(d), profile: "plain"},
		{start: rosetta(proxySetup{name: "rosetta, goroutine path (ROSETTA_EVENT_LOOPS=off)", upstream: plain, env: []string{"ROSETTA_EVENT_LOOPS=off"}}), dial: dialPlain(d), profile: "goroutines"},
		{start: rosetta(mtls("rosetta, mTLS both sides", nil)), dial: m.dialTLS(d, proxyID), profile: "mtls"},
		{start: rosetta(mtls(fmt.Sprintf("rosetta, mTLS + %d authorization rules", len(policies)), policies)), dial: m.dialTLS(d, proxyID), check: allowedByLast, profile: "mtls-authz"},
	}
	const base = 2 // the plaintext proxy
	if istio.HBONE != nil {
		rows = append(rows,
			mtlsRow{start: rosetta(hbone("rosetta, HBONE in, mTLS out")), dial: m.dialHBONE(d, istio.HBONE, true), check: servedOverHBONE(o.Conns, true), profile: "hbone"},
			mtlsRow{start: rosetta(hbone("rosetta, HBONE in (an HTTP/2 connection per stream), mTLS out")), dial: m.dialHBONE(d, istio.HBONE, false), check: servedOverHBONE(o.Conns, false), profile: "hbone-per-stream"})
	} else {
		fmt.Fprintln(os.Stderr, "load: no HBONE client; the HBONE rows are left out")
	}
	if _, err := exec.LookPath("haproxy"); err == nil {
		rows = append(rows,
			mtlsRow{start: func() (*target, error) { return startHAProxy(dir, "haproxy (L4 TCP)", plain, "") }, dial: dialPlain(d)},
			mtlsRow{start: func() (*target, error) { return startHAProxy(dir, "haproxy, TLS both sides", secure, m.haproxySSL()) }, dial: m.dialTLS(d, proxyID)})
	} else {
		fmt.Fprintln(os.Stderr, "load: haproxy is not installed; its rows are left out")
	}

	var results []result
	for _, row := range rows {
		t, err := row.start()
		if err != nil {
			return err
		}
		t.dial = row.dial(t)
		ro := o
		ro.Profile = ""
		if o.Profile != "" && row.profile != "" {
			ext := filepath.Ext(o.Profile)
			ro.Profile = strings.TrimSuffix(o.Profile, ext) + "-" + row.profile + ext
		}
		r, err := measure(d, t, ro, row.check)
		t.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		results = append(results, r)
	}
	printMTLSTable(w, d.Name(), o, results, base)
	return nil
}

// mtlsRow is one row of the comparison: how to start its target and dial
// it, and what to check after the fixed-rate run. A rosetta row's CPU
// profile (with -profile FILE.EXT) goes to FILE-profile.EXT.
type mtlsRow struct {
	start   func() (*target, error)
	dial    func(t *target) func(payload int) (Client, error)
	check   func(*target) error
	profile string
}

// measure runs the fixed-rate and the saturation run against t.
func measure(d Driver, t *target, o Options, check func(*target) error) (result, error) {
	fixed, err := fixedRate(d, t, o)
	if err != nil {
		return result{}, err
	}
	if check != nil {
		if err := check(t); err != nil {
			return result{}, err
		}
	}
	sat, err := saturate(d, t, o)
	if err != nil {
		return result{}, err
	}
	fixed.saturated = sat.throughput
	return fixed, nil
}

// reached is a row without a proxy: the client dials the provider.
func reached(name, addr string) func() (*target, error) {
	return func() (*target, error) { return &target{name: name, addr: addr}, nil }
}

// serveOn starts d's server on a loopback listener that wrap may secure.
func serveOn(d ConnDriver, o Options, wrap func(net.Listener) net.Listener) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	stop, err = d.ServeListener(wrap(ln), o.Payload)
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	return ln.Addr().String(), stop, nil
}

func dialPlain(d ConnDriver) func(t *target) func(int) (Client, error) {
	return func(t *target) func(int) (Client, error) {
		return func(payload int) (Client, error) {
			nc, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
			if err != nil {
				return nil, err
			}
			return d.DialConn(nc, payload)
		}
	}
}

// Istio is the mesh code the comparison's clients and provider run. The
// command supplies it (from pkg/identity and pkg/hbone/hbonetest), so that
// this package, which the e2e modules' load commands import too, does not
// bring in their dependencies (gRPC, Istio's API).
type Istio struct {
	Identity Identity
	// HBONE is the caller's HBONE client; nil leaves the HBONE rows out.
	HBONE HBONEDialer
}

// Identity gives the TLS configs of the workload whose certificate, key and
// root are dir's cert-chain.pem, key.pem and root-cert.pem (as istio-agent
// writes them), for as long as ctx lasts: its server config, and its client
// config for a server whose SPIFFE ID must be san.
type Identity func(ctx context.Context, dir string) (server *tls.Config, client func(san string) *tls.Config, err error)

// mesh holds the identities: the caller's and the provider's in this
// process, the proxy's as the files of its --cert-dir.
type mesh struct {
	caller   func(san string) *tls.Config
	provider *tls.Config
	proxyDir string
}

func newMesh(ctx context.Context, dir string, id Identity) (*mesh, error) {
	ca := identitytest.NewCA("rosetta bench mesh")
	m := &mesh{proxyDir: filepath.Join(dir, "proxy")}
	if err := writeIdentity(ca, m.proxyDir, proxyID); err != nil {
		return nil, err
	}
	// haproxy reads its certificate and key from one file.
	cert, err := os.ReadFile(filepath.Join(m.proxyDir, "cert-chain.pem"))
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(filepath.Join(m.proxyDir, "key.pem"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(m.proxyDir, "haproxy.pem"), append(cert, key...), 0o600); err != nil {
		return nil, err
	}
	callerDir, providerDir := filepath.Join(dir, "caller"), filepath.Join(dir, "provider")
	if err := writeIdentity(ca, callerDir, callerID); err != nil {
		return nil, err
	}
	if err := writeIdentity(ca, providerDir, providerID); err != nil {
		return nil, err
	}
	if _, m.caller, err = id(ctx, callerDir); err != nil {
		return nil, fmt.Errorf("caller identity: %w", err)
	}
	if m.provider, _, err = id(ctx, providerDir); err != nil {
		return nil, fmt.Errorf("provider identity: %w", err)
	}
	return m, nil
}

// writeIdentity writes id's certificate, key and the root as istio-agent
// does.
func writeIdentity(ca *identitytest.CA, dir, id string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cert, key := ca.Leaf(id, 24*time.Hour)
	for name, data := range map[string][]byte{"cert-chain.pem": cert, "key.pem": key, "root-cert.pem": ca.PEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// dialTLS connects clients as the caller's sidecar would: mTLS with the
// caller's certificate, the server's SPIFFE ID checked to be san.
func (m *mesh) dialTLS(d ConnDriver, san string) func(t *target) func(int) (Client, error) {
	cfg := m.caller(san)
	return func(t *target) func(int) (Client, error) {
		return func(payload int) (Client, error) {
			nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", t.addr, cfg)
			if err != nil {
				return nil, err
			}
			return d.DialConn(nc, payload)
		}
	}
}

// haproxySSL terminates and originates mutual TLS with the proxy's
// certificate, verifying the peer's chain against the mesh root and
// speaking Istio's ALPN. haproxy cannot match a SPIFFE URI SAN, so it checks
// less of the provider than rosetta does (the chain, not the name).
func (m *mesh) haproxySSL() string {
	return fmt.Sprintf(" ssl crt %s ca-file %s verify required alpn istio",
		filepath.Join(m.proxyDir, "haproxy.pem"), filepath.Join(m.proxyDir, "root-cert.pem"))
}

// lastAllow names the policy the benchmark's calls match.
const lastAllow = "bench/allow-frontend-echo"

// authorization is 20 policies of one rule each, 10 DENY and 10 ALLOW, on
// principals, namespaces and the route's attribute (the Dubbo method), as
// a namespace's AuthorizationPolicies might read. The benchmark's caller
// (shop/frontend calling the echo method) matches no DENY and only the last
// ALLOW, so every rule is evaluated for every request; several match its
// namespace or principal and fail only on the method, or the other way
// round.
func authorization(attr, value string) []obj {
	from := func(k string, v ...string) obj { return obj{k: v} }
	to := func(k string, v ...string) obj {
		return obj{"attributes": []obj{{"name": attr, k: v}}}
	}
	rule := func(f, t obj) obj {
		r := obj{}
		if f != nil {
			r["from"] = []obj{f}
		}
		if t != nil {
			r["to"] = []obj{t}
		}
		return r
	}
	policy := func(name, action string, r obj) obj {
		return obj{"name": "bench/" + name, "action": action, "rules": []obj{r}}
	}
	caller := strings.TrimPrefix(callerID, "spiffe://")
	return []obj{
		policy("deny-intruder", "DENY", rule(from("principals", "cluster.local/ns/other/sa/intruder"), nil)),
		policy("deny-quarantine", "DENY", rule(from("namespaces", "quarantine"), nil)),
		policy("deny-drop", "DENY", rule(nil, to("values", "drop*", "delete*"))),
		policy("deny-shop-admin", "DENY", rule(from("namespaces", "shop"), to("values", "*Admin"))),
		policy("deny-outsiders", "DENY", rule(from("not_namespaces", "shop", "demo"), nil)),
		policy("deny-batch", "DENY", rule(from("principals", "cluster.local/ns/shop/sa/batch"), to("values", "*"))),
		policy("deny-legacy", "DENY", rule(from("principals", "*/sa/legacy"), nil)),
		policy("deny-internal", "DENY", rule(nil, to("values", "internal*"))),
		policy("deny-shop-other-methods", "DENY", rule(from("namespaces", "shop"), to("not_values", value))),
		policy("deny-frontend-reset", "DENY", rule(from("principals", caller), to("values", "reset*"))),
		policy("allow-billing", "ALLOW", rule(from("namespaces", "billing"), nil)),
		policy("allow-admin", "ALLOW", rule(from("principals", "cluster.local/ns/demo/sa/admin"), nil)),
		policy("allow-shop-reads", "ALLOW", rule(from("namespaces", "shop"), to("values", "get*", "list*"))),
		policy("allow-checkout", "ALLOW", rule(from("namespaces", "checkout", "cart"), nil)),
		policy("allow-health", "ALLOW", rule(nil, to("values", "health*"))),
		policy("allow-reporting", "ALLOW", rule(from("principals", "cluster.local/ns/shop/sa/reporting"), to("values", "*"))),
		policy("allow-demo", "ALLOW", rule(from("namespaces", "demo"), nil)),
		policy("allow-frontend-v2", "ALLOW", rule(from("principals", caller), to("values", value+"V2"))),
		policy("allow-shop-canary", "ALLOW", rule(from("namespaces", "shop-*"), nil)),
		policy(strings.TrimPrefix(lastAllow, "bench/"), "ALLOW", rule(from("principals", caller), to("values", value))),
	}
}

// allowedByLast checks that the proxy's authorization ran and that the
// last ALLOW policy let the calls through, so the row measured the rules.
func allowedByLast(t *target) error {
	m, err := scrape(t)
	if err != nil {
		return err
	}
	want := fmt.Sprintf("policy=%q,result=\"allowed\"", lastAllow)
	if !strings.Contains(m, want) {
		return fmt.Errorf("the proxy's metrics have no calls allowed by %s (want a series with %s)", lastAllow, want)
	}
	return nil
}

// istioInbound makes a filter chain STRICT Istio mutual TLS, as istiod
// writes an inbound chain: the workload certificate and the mesh root by
// their SDS names, a client certificate required.
func istioInbound(chain obj) {
	chain["filter_chain_match"] = obj{"transport_protocol": "tls"}
	chain["transport_socket"] = obj{"name": "envoy.transport_sockets.tls", "typed_config": obj{
		"@type":                      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
		"require_client_certificate": true,
		"common_tls_context": obj{
			"tls_certificate_sds_secret_configs":   []obj{{"name": "default"}},
			"validation_context_sds_secret_config": obj{"name": "ROOTCA"},
		},
	}}
}

// istioOutbound gives a cluster Istio's auto-mTLS, as istiod writes an
// outbound cluster: the TLS socket for endpoints marked tlsMode=istio (the
// endpoint is), the provider's SPIFFE ID as the only name accepted.
func istioOutbound(cluster, endpoint obj, upstream, san string) {
	cluster["transport_socket_matches"] = []obj{
		{"name": "tlsMode-istio", "match": obj{"tlsMode": "istio"}, "transport_socket": obj{"name": "envoy.transport_sockets.tls", "typed_config": obj{
			"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
			"sni":   "outbound_." + Port(upstream) + "_._.echo.demo.svc.cluster.local",
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
	endpoint["metadata"] = obj{"filter_metadata": obj{"envoy.transport_socket_match": obj{"tlsMode": "istio"}}}
}

// printMTLSTable writes rows with their differences and ratios to the row
// base (the plaintext proxy).
func printMTLSTable(w io.Writer, title string, o Options, rows []result, base int) {
	b := rows[base]
	fmt.Fprintf(w, "%s echo over Istio mutual TLS, %d-byte payload, %d connections; fixed rate %d req/s for %v; saturation with %d in flight per connection. "+
		"Differences and ratios are against the %s row; the harness column is the load generator's and the provider's CPU, TLS and HTTP/2 ends included.\n\n",
		title, o.Payload, o.Conns, o.Rate, o.Duration, o.Inflight, b.name)
	fmt.Fprintln(w, "| path | req/s | errors | p50 | p90 | p99 | p50 vs rosetta | p99 vs rosetta | proxy CPU s / 1000 req | CPU vs rosetta | proxy RSS MB | harness CPU s / 1000 req | saturated req/s | saturated vs rosetta |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		cpu, ratio, rss := "-", "-", "-"
		if r.cpuPer1000 >= 0 {
			cpu, rss = fmt.Sprintf("%.4f", r.cpuPer1000), fmt.Sprintf("%.1f", r.rssMB)
			if b.cpuPer1000 > 0 {
				ratio = fmt.Sprintf("%.2f", r.cpuPer1000/b.cpuPer1000)
			}
		}
		fmt.Fprintf(w, "| %s | %.0f | %d | %s | %s | %s | %s | %s | %s | %s | %s | %.4f | %.0f | %.2f |\n",
			r.name, r.throughput, r.errors, ms(r.p50), ms(r.p90), ms(r.p99), signedMS(r.p50-b.p50), signedMS(r.p99-b.p99),
			cpu, ratio, rss, r.harnessPer1000, r.saturated, r.saturated/b.saturated)
	}
}

func signedMS(d time.Duration) string { return fmt.Sprintf("%+.3f ms", float64(d)/1e6) }
