package lines_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/lines"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// proxyConfig routes command SLOW to the server at the first port and
// commands PING, SET, GET and DEL to the one at the second.
const proxyConfig = `
listeners:
- name: lines
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: lines-example
        route_config_name: r
routes:
- name: r
  routes:
  - name: slow
    match: {attributes: [{name: command, exact: SLOW}]}
    route: {cluster: slow, timeout: 3s}
  - name: store
    match: {attributes: [{name: command, regex: "PING|SET|GET|DEL"}]}
    route: {cluster: store, timeout: 3s}
clusters:
- name: slow
  connect_timeout: 1s
  load_assignment:
    cluster_name: slow
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]
- name: store
  connect_timeout: 1s
  load_assignment:
    cluster_name: store
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]
`

// proxied starts a slow server (it answers SLOW <word> with the word after
// 50ms), a store and a proxy in front of them, and returns the proxy and
// a connection to it.
func proxied(t *testing.T) (*proxytest.Proxy, net.Conn) {
	t.Helper()
	slow := serve(t, func(w []string) (string, error) {
		time.Sleep(50 * time.Millisecond)
		return strings.Join(w[1:], " "), nil
	})
	kv := serve(t, store())
	px := proxytest.Start(t, fmt.Sprintf(proxyConfig, port(t, slow), port(t, kv)))
	nc, err := net.Dial("tcp", px.Addr(t, "lines"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return px, nc
}

func serve(t *testing.T, h lines.Handler) *lines.Server {
	t.Helper()
	s, err := lines.Serve("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func port(t *testing.T, s *lines.Server) string {
	t.Helper()
	_, p, err := net.SplitHostPort(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestThroughProxy pipelines requests to two servers, one slow, and to no
// route: the proxy answers them in the order they were sent, with its own
// answer to the unrouted one an ERR that the client reads, and counts them
// by command.
func TestThroughProxy(t *testing.T) {
	px, nc := proxied(t)
	c := lines.NewClient(nc)
	calls := []struct {
		words []string
		text  string
		err   string // the start of the error's text
	}{
		{words: []string{"SLOW", "first"}, text: "first"},
		{words: []string{"SET", "k", "v"}},
		{words: []string{"GET", "k"}, text: "v"},
		{words: []string{"NOPE"}, err: "lines: ERR no_route: "},
		{words: []string{"SLOW", "last"}, text: "last"},
		{words: []string{"PING"}, text: "PONG"},
	}
	for _, call := range calls {
		if err := c.Send(call.words...); err != nil {
			t.Fatal(err)
		}
	}
	for _, call := range calls {
		text, err := c.Receive()
		if text != call.text || (err == nil) != (call.err == "") || err != nil && !strings.HasPrefix(err.Error(), call.err) {
			t.Errorf("%v: %q, %v; want %q, %q", call.words, text, err, call.text, call.err)
		}
	}
	// The protocol's MetricAttribute labels the operation metrics.
	if m := px.Get(t, "/metrics"); !strings.Contains(m, `rosetta_operations_total{listener="lines",operation="SLOW",status="ok"} 2`) {
		t.Errorf("no operation metric for SLOW in:\n%s", m)
	}
}

// TestBadLineThroughProxy: a request with an empty word gets the proxy's
// bad_request ERR, after the answers to the requests before it, and then
// the connection closes.
func TestBadLineThroughProxy(t *testing.T) {
	_, nc := proxied(t)
	c := lines.NewClient(nc)
	if err := c.Send("SLOW", "before"); err != nil {
		t.Fatal(err)
	}
	if err := c.Send("GET", "k"); err != nil { // no such key: an ERR from the store
		t.Fatal(err)
	}
	if _, err := nc.Write([]byte("GET  k\n")); err != nil {
		t.Fatal(err)
	}
	if text, err := c.Receive(); text != "before" || err != nil {
		t.Fatalf("first answer: %q, %v", text, err)
	}
	if _, err := c.Receive(); err == nil || !strings.HasPrefix(err.Error(), "lines: ERR no key k") {
		t.Fatalf("second answer: %v, want the store's ERR", err)
	}
	if _, err := c.Receive(); err == nil || !strings.HasPrefix(err.Error(), "lines: ERR bad_request: ") {
		t.Fatalf("answer to the bad line: %v, want ERR bad_request", err)
	}
	if _, err := c.Receive(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the bad line: %v, want the connection closed", err)
	}
}
