package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/hbone/hbonetest"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// Two services on one port number, as Dubbo's 20880 often is: greeter's
// listener is bound, other's has no address and is reached only through
// HBONE.
const (
	greeterVIP = "10.96.0.1:20880"
	otherVIP   = "10.96.0.2:20880"
)

// hboneProxy runs a proxy with the waypoint's identity, terminating HBONE
// on a loopback port it returns.
func hboneProxy(t *testing.T, ca *identitytest.CA, cfg string) (*proxytest.Proxy, string) {
	t.Helper()
	p := proxytest.StartWithIdentity(t, cfg, workload(t, ca, waypointID))
	addr, err := p.ListenHBONE("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return p, addr.String()
}

// withAuthorities makes l serve these HBONE destinations.
func withAuthorities(l obj, authorities ...string) obj {
	filter := l["filter_chains"].([]obj)[0]["filters"].([]obj)[0]["typed_config"].(obj)
	filter["authorities"] = authorities
	return l
}

// addressless removes l's address: HBONE is its only way in.
func addressless(l obj) obj {
	delete(l, "address")
	return l
}

// twoServices is a config with greeter and other behind one port number.
func twoServices(t *testing.T, greeter, other string, extra obj) string {
	return configJSON(t,
		[]obj{
			withAuthorities(listener("greeter", "greeter", extra), greeterVIP),
			withAuthorities(addressless(listener("other", "other", extra)), otherVIP),
		},
		[]obj{
			routeConfig("greeter", route("all", nil, obj{"cluster": "greeter"})),
			routeConfig("other", route("all", nil, obj{"cluster": "other"})),
		},
		[]obj{cluster("greeter", "", greeter), cluster("other", "", other)})
}

// hboneTLS is what ztunnel presents for a workload: its certificate, the
// waypoint's verified, ALPN h2.
func hboneTLS(w *identity.Workload) *tls.Config { return hbonetest.ClientTLS(w, waypointID) }

// dialHBONE opens one HTTP/2 connection to the HBONE port, as ztunnel's
// pool does.
func dialHBONE(t *testing.T, addr string, cfg *tls.Config) (*hbonetest.Conn, error) {
	t.Helper()
	cc, err := hbonetest.Dial(addr, cfg)
	if err == nil {
		t.Cleanup(func() { cc.Close() })
	}
	return cc, err
}

// connect opens a CONNECT stream to authority on cc; a refused one gives
// its status.
func connect(t *testing.T, cc *hbonetest.Conn, authority string) (*hbonetest.Tunnel, int, error) {
	t.Helper()
	tn, status, err := cc.Connect(authority)
	if tn != nil {
		t.Cleanup(func() { tn.Close() })
	}
	return tn, status, err
}

// mustConnect opens a stream that must be accepted, and a toy client on it.
func mustConnect(t *testing.T, cc *hbonetest.Conn, authority string) (*toy.Client, *hbonetest.Tunnel) {
	t.Helper()
	tn, status, err := connect(t, cc, authority)
	if err != nil || status != http.StatusOK {
		t.Fatalf("CONNECT %s: status %d, %v", authority, status, err)
	}
	return toy.NewClient(tn), tn
}

func TestHBONEServesEachDestinationOnItsListener(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	greeter, greeterHits := named(t, "greeter")
	other, otherHits := named(t, "other")
	p, addr := hboneProxy(t, ca, twoServices(t, greeter.Addr(), other.Addr(), nil))
	if a, ok := p.Proxy.Addr("other"); ok {
		t.Fatalf("the listener without an address is bound at %s", a)
	}

	cc, err := dialHBONE(t, addr, hboneTLS(workload(t, ca, callerID)))
	if err != nil {
		t.Fatal(err)
	}
	// Both services share port 20880; the CONNECT's destination picks
	// the listener, on one HTTP/2 connection.
	g, _ := mustConnect(t, cc, greeterVIP)
	o, _ := mustConnect(t, cc, otherVIP)
	for range 3 {
		if got := answeredBy(t, g, map[string]string{"method": "hi"}); got != "greeter" {
			t.Errorf("through %s: answered by %q, want greeter", greeterVIP, got)
		}
		if got := answeredBy(t, o, map[string]string{"method": "hi"}); got != "other" {
			t.Errorf("through %s: answered by %q, want other", otherVIP, got)
		}
	}
	if greeterHits.Load() != 3 || otherHits.Load() != 3 {
		t.Errorf("greeter got %d calls, other %d; want 3 each", greeterHits.Load(), otherHits.Load())
	}
	// The bound listener still serves TCP callers.
	if got := answeredBy(t, dial(t, p.Addr(t, "greeter")), map[string]string{"method": "hi"}); got != "greeter" {
		t.Errorf("plain TCP to greeter's listener: answered by %q", got)
	}

	// A destination no listener serves is refused; the connection goes on
	// serving streams.
	if _, status, err := connect(t, cc, "10.96.0.9:20880"); err != nil || status != http.StatusServiceUnavailable {
		t.Errorf("CONNECT to an unknown destination: status %d, %v; want 503", status, err)
	}
	if _, status, err := connect(t, cc, "greeter:20880"); err != nil || status != http.StatusBadRequest {
		t.Errorf("CONNECT to a host name: status %d, %v; want 400", status, err)
	}
	g2, _ := mustConnect(t, cc, greeterVIP)
	if got := answeredBy(t, g2, map[string]string{"method": "hi"}); got != "greeter" {
		t.Errorf("after a refused stream: answered by %q", got)
	}
	// Only CONNECT is served.
	req, _ := http.NewRequest(http.MethodGet, "https://"+greeterVIP+"/", nil)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", resp.StatusCode)
	}

	m := p.Get(t, "/metrics")
	for _, want := range []string{
		`rosetta_downstream_connections_total{listener="greeter",transport="hbone"} 2`,
		`rosetta_downstream_connections_total{listener="other",transport="hbone"} 1`,
		`rosetta_downstream_connections_total{listener="greeter",transport="plaintext"} 1`,
		`rosetta_downstream_connections_active{listener="other"} 1`,
		`rosetta_hbone_streams_accepted_total 3`,
		`rosetta_hbone_streams_refused_total{reason="unknown_authority"} 1`,
		`rosetta_hbone_streams_refused_total{reason="bad_authority"} 1`,
		`rosetta_hbone_streams_refused_total{reason="method_not_allowed"} 1`,
		`rosetta_hbone_connections_active 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "hbone"))
		}
	}
}

func TestHBONENeedsAMeshCertificate(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	srv, hits := named(t, "greeter")
	p, addr := hboneProxy(t, ca, twoServices(t, srv.Addr(), srv.Addr(), nil))

	noCert := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}
	stranger := hboneTLS(workload(t, identitytest.NewCA("other mesh"), callerID))
	for name, cfg := range map[string]*tls.Config{"no certificate": noCert, "another CA's": stranger} {
		cc, err := dialHBONE(t, addr, cfg)
		if err == nil {
			_, status, cerr := connect(t, cc, greeterVIP)
			err = cerr
			if err == nil {
				t.Errorf("%s: CONNECT answered %d", name, status)
			}
		}
		if err == nil {
			t.Errorf("%s: the handshake succeeded", name)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server got %d calls", n)
	}
	testutil.Eventually(t, 5*time.Second, "two failed handshakes counted", func() bool {
		return strings.Contains(p.Get(t, "/metrics"), "rosetta_hbone_tls_handshake_errors_total 2")
	})
}

func TestHBONECallerIdentityIsThePrincipal(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	srv, hits := named(t, "greeter")
	policies := []obj{
		{"name": "demo/deny-frontend", "action": "DENY", "rules": []obj{{"from": []obj{{"principals": []string{"cluster.local/ns/shop/sa/frontend"}}}}}},
		// A stream's port is its destination's, 20880, whatever port
		// the listener is bound to.
		{"name": "demo/only-20880", "action": "DENY", "rules": []obj{{"to": []obj{{"not_ports": []int{20880}}}}}},
	}
	p, addr := hboneProxy(t, ca, twoServices(t, srv.Addr(), srv.Addr(), obj{"authorization": policies}))

	frontend, err := dialHBONE(t, addr, hboneTLS(workload(t, ca, callerID)))
	if err != nil {
		t.Fatal(err)
	}
	for _, vip := range []string{greeterVIP, otherVIP} {
		c, _ := mustConnect(t, frontend, vip)
		if r := call(t, c, map[string]string{"method": "hi"}); statusOf(r) != codec.StatusUnauthorized.String() {
			t.Errorf("frontend through %s: status %s, want %s", vip, statusOf(r), codec.StatusUnauthorized)
		}
	}
	intruder, err := dialHBONE(t, addr, hboneTLS(workload(t, ca, strangerID)))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := mustConnect(t, intruder, greeterVIP)
	if got := answeredBy(t, c, map[string]string{"method": "hi"}); got != "greeter" {
		t.Errorf("another caller: answered by %q", got)
	}
	if r := call(t, dial(t, p.Addr(t, "greeter")), map[string]string{"method": "hi"}); statusOf(r) != codec.StatusUnauthorized.String() {
		t.Errorf("TCP to greeter's listener, bound to another port than 20880: status %s, want %s", statusOf(r), codec.StatusUnauthorized)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the server got %d calls, want 1", n)
	}
	if m := p.Get(t, "/metrics"); !strings.Contains(m, `rosetta_authorization_total{listener="other",policy="demo/deny-frontend",result="denied"} 1`) {
		t.Errorf("no denial counted on other:\n%s", grepLines(m, "authorization"))
	}
}

func TestHBONEStreamsCountAgainstMaxConnections(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	srv, _ := named(t, "greeter")
	p, addr := hboneProxy(t, ca, twoServices(t, srv.Addr(), srv.Addr(), obj{"max_connections": 1}))
	cc, err := dialHBONE(t, addr, hboneTLS(workload(t, ca, callerID)))
	if err != nil {
		t.Fatal(err)
	}
	c, first := mustConnect(t, cc, otherVIP)
	if got := answeredBy(t, c, map[string]string{"method": "hi"}); got != "greeter" {
		t.Fatalf("answered by %q", got)
	}
	if _, status, err := connect(t, cc, otherVIP); err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("a second stream past max_connections 1: status %d, %v; want 503", status, err)
	}
	// The caller resets its stream: the listener's connection is gone,
	// and a new stream takes its place.
	first.Reset()
	testutil.Eventually(t, 5*time.Second, "the reset stream's connection to close", func() bool {
		return strings.Contains(p.Get(t, "/metrics"), `rosetta_downstream_connections_active{listener="other"} 0`)
	})
	c2, _ := mustConnect(t, cc, otherVIP)
	if got := answeredBy(t, c2, map[string]string{"method": "hi"}); got != "greeter" {
		t.Errorf("after the reset: answered by %q", got)
	}
	m := p.Get(t, "/metrics")
	for _, want := range []string{
		`rosetta_hbone_streams_refused_total{reason="max_connections"} 1`,
		`rosetta_downstream_connections_refused_total{listener="other"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "refused"))
		}
	}
}

func TestHBONEStreamIdleTimeout(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	slow, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response {
		time.Sleep(400 * time.Millisecond)
		return &toy.Response{Headers: map[string]string{"server": "slow"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(slow.Close)
	p, addr := hboneProxy(t, ca, twoServices(t, slow.Addr(), slow.Addr(), obj{"idle_timeout": "0.15s"}))
	cc, err := dialHBONE(t, addr, hboneTLS(workload(t, ca, callerID)))
	if err != nil {
		t.Fatal(err)
	}
	c, tn := mustConnect(t, cc, otherVIP)
	// A request in flight outlasts the idle time: the stream is not idle.
	if got := answeredBy(t, c, map[string]string{"method": "hi"}); got != "slow" {
		t.Fatalf("answered by %q", got)
	}
	// Once idle, the proxy ends the stream.
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, tn)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the idle stream ended with %v, want its end (END_STREAM)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an idle stream stayed open")
	}
	if m := p.Get(t, "/metrics"); !strings.Contains(m, `rosetta_downstream_connections_closed_by_limit_total{limit="idle_timeout",listener="other"} 1`) {
		t.Errorf("idle close not counted:\n%s", grepLines(m, "closed_by_limit"))
	}
}

func TestHBONEDrainsOnShutdown(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	slow, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response {
		arrived <- struct{}{}
		<-release
		return &toy.Response{Headers: map[string]string{"server": "slow"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(slow.Close)
	p := proxy.New(nil)
	p.UseIdentity(workload(t, ca, waypointID))
	if err := applyTo(t, p, twoServices(t, slow.Addr(), slow.Addr(), nil)); err != nil {
		t.Fatal(err)
	}
	hb, err := p.ListenHBONE("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := dialHBONE(t, hb.String(), hboneTLS(workload(t, ca, callerID)))
	if err != nil {
		t.Fatal(err)
	}
	c, tn := mustConnect(t, cc, otherVIP)
	answered := make(chan error, 1)
	go func() {
		r, err := c.Call(map[string]string{"method": "slow"}, nil)
		if err == nil {
			err = r.Err()
		}
		answered <- err
	}()
	<-arrived
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- p.Shutdown(ctx)
	}()
	// The HBONE port stops accepting at once; the call in flight is
	// answered, then the stream ends.
	testutil.Eventually(t, 5*time.Second, "the HBONE port to close", func() bool {
		nc, err := net.Dial("tcp", hb.String())
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	close(release)
	if err := <-answered; err != nil {
		t.Fatalf("the call in flight: %v", err)
	}
	if _, err := io.Copy(io.Discard, tn); err != nil {
		t.Errorf("the drained stream ended with %v, want its end (END_STREAM)", err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func applyTo(t *testing.T, p *proxy.Proxy, cfg string) error {
	t.Helper()
	boot, err := config.Parse([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return p.Apply(boot.Resources)
}

func TestHBONENeedsAnIdentity(t *testing.T) {
	if _, err := proxy.New(nil).ListenHBONE("127.0.0.1:0"); !errors.Is(err, proxy.ErrHBONENeedsIdentity) {
		t.Fatalf("ListenHBONE without an identity: %v", err)
	}
}

func TestListenersWithoutAddressAreValidatedByTheirAuthorities(t *testing.T) {
	routes := []obj{routeConfig("r")}
	for _, tc := range []struct {
		name      string
		listeners []obj
		err       string // "" for valid
	}{
		{"bound and reached through HBONE", []obj{withAuthorities(listener("a", "r", nil), greeterVIP)}, ""},
		{"only through HBONE", []obj{withAuthorities(addressless(listener("a", "r", nil)), greeterVIP, "[fd00::1]:20880")}, ""},
		{"two without an address", []obj{
			withAuthorities(addressless(listener("a", "r", nil)), greeterVIP),
			withAuthorities(addressless(listener("b", "r", nil)), otherVIP),
		}, ""},
		{"neither an address nor authorities", []obj{addressless(listener("a", "r", nil))},
			`listeners[0] (a): address.socket_address: required, unless the listener is reached only through HBONE and its rosetta.metaprotocol filter's authorities name the destinations it serves`},
		{"an address without socket_address", []obj{withAuthorities(func() obj {
			l := listener("a", "r", nil)
			l["address"] = obj{"pipe": obj{"path": "/tmp/x"}}
			return l
		}(), greeterVIP)}, `listeners[0] (a): address: only socket_address is supported`},
		{"a host name", []obj{withAuthorities(addressless(listener("a", "r", nil)), "greeter.demo:20880")},
			`listeners[0] (a): filter rosetta.metaprotocol: authorities[0]: "greeter.demo:20880" is not an ip:port destination`},
		{"port 0", []obj{withAuthorities(addressless(listener("a", "r", nil)), "10.96.0.1:0")},
			`listeners[0] (a): filter rosetta.metaprotocol: authorities[0]: "10.96.0.1:0": the port must not be 0`},
		{"listed twice", []obj{withAuthorities(addressless(listener("a", "r", nil)), greeterVIP, "[::ffff:10.96.0.1]:20880")},
			`listeners[0] (a): filter rosetta.metaprotocol: authorities[1]: 10.96.0.1:20880 is listed twice`},
		{"served by two listeners", []obj{
			withAuthorities(listener("a", "r", nil), greeterVIP),
			withAuthorities(addressless(listener("b", "r", nil)), otherVIP, greeterVIP),
		}, `listeners[1] (b): filter rosetta.metaprotocol: authorities[1]: 10.96.0.1:20880 is also served by listener "a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			boot, err := config.Parse([]byte(configJSON(t, tc.listeners, routes, nil)))
			if err != nil {
				t.Fatal(err)
			}
			err = proxy.Validate(boot.Resources)
			if got := fmt.Sprint(err); tc.err == "" && err != nil || tc.err != "" && got != tc.err {
				t.Errorf("Validate: %v\nwant:     %s", err, tc.err)
			}
		})
	}
}

// A config update moves destinations between listeners, and a listener
// from HBONE only to an address of its own; a stream of the listener it
// replaces drains as that listener's connections do.
func TestHBONEDestinationsFollowConfigUpdates(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	greeter, _ := named(t, "greeter")
	other, _ := named(t, "other")
	p, addr := hboneProxy(t, ca, twoServices(t, greeter.Addr(), other.Addr(), nil))
	cc, err := dialHBONE(t, addr, hboneTLS(workload(t, ca, callerID)))
	if err != nil {
		t.Fatal(err)
	}
	_, before := mustConnect(t, cc, otherVIP)

	// other gets an address; greeter's destination now belongs to it too.
	const third = "10.96.0.3:20880"
	updated := configJSON(t,
		[]obj{
			withAuthorities(listener("greeter", "greeter", nil), third),
			withAuthorities(onLoopback2(listener("other", "other", nil)), otherVIP, greeterVIP),
		},
		[]obj{
			routeConfig("greeter", route("all", nil, obj{"cluster": "greeter"})),
			routeConfig("other", route("all", nil, obj{"cluster": "other"})),
		},
		[]obj{cluster("greeter", "", greeter.Addr()), cluster("other", "", other.Addr())})
	if err := applyTo(t, p.Proxy, updated); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Proxy.Addr("other"); !ok {
		t.Error("other has an address now, and no socket")
	}
	for vip, want := range map[string]string{greeterVIP: "other", otherVIP: "other", third: "greeter"} {
		c, _ := mustConnect(t, cc, vip)
		if got := answeredBy(t, c, map[string]string{"method": "hi"}); got != want {
			t.Errorf("through %s: answered by %q, want %s", vip, got, want)
		}
	}
	// The stream opened before, idle on the listener now replaced, ends.
	if _, err := io.Copy(io.Discard, before); err != nil {
		t.Errorf("the stream of the replaced listener ended with %v, want its end (END_STREAM)", err)
	}
}
