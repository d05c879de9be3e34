package thrift_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	_ "github.com/rosetta-mesh/rosetta/protocols/thrift" // registers the codec
	"github.com/rosetta-mesh/rosetta/protocols/thrift/internal/echo"
)

// proxyConfig routes ping to cluster a, echo and fire to cluster b, and, on a
// THeader connection, any call with the info header x-canary: yes to b with
// an x-route header added. nosuch has no route. Go's client sends oneway calls
// as CALL messages, so the codec is told fire is oneway.
const proxyConfig = `
listeners:
- name: thrift
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: thrift
        codec_options: {oneway_methods: fire}
        route_config_name: thrift-routes
routes:
- name: thrift-routes
  routes:%s
  - name: ping
    match:
      attributes:
      - {name: method, exact: ping}
    route: {cluster: a, timeout: 3s}
  - name: echo
    match:
      attributes:
      - {name: method, exact: echo}
    route: {cluster: b, timeout: 3s}
  - name: fire
    match:
      attributes:
      - {name: method, exact: fire}
    route: {cluster: b, timeout: 3s}
clusters:
- name: a
  connect_timeout: 1s
  load_assignment:
    cluster_name: a
    endpoints:
    - lb_endpoints:
      - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}
- name: b
  connect_timeout: 1s
  load_assignment:
    cluster_name: b
    endpoints:
    - lb_endpoints:
      - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}
`

const canaryRoute = `
  - name: canary
    match:
      attributes:
      - {name: x-canary, exact: "yes"}
    route:
      cluster: b
      timeout: 3s
      request_mutation: [{key: x-route, value: canary}]`

// proxytestStart runs a proxy with config and returns its thrift listener's address.
func proxytestStart(t *testing.T, config string) string {
	t.Helper()
	return proxytest.Start(t, config).Addr(t, "thrift")
}

// peer is how a client and a server of one combination wrap a socket.
type peer struct {
	name      string
	transport string // framed, unframed, header
	compact   bool
}

func (p peer) config() *thrift.TConfiguration {
	cfg := &thrift.TConfiguration{}
	if p.transport == "header" {
		id := thrift.THeaderProtocolBinary
		if p.compact {
			id = thrift.THeaderProtocolCompact
		}
		cfg.THeaderProtocolID = &id
	}
	return cfg
}

func (p peer) factories() (thrift.TTransportFactory, thrift.TProtocolFactory) {
	cfg := p.config()
	if p.transport == "header" {
		return thrift.NewTTransportFactory(), thrift.NewTHeaderProtocolFactoryConf(cfg)
	}
	var tf thrift.TTransportFactory = thrift.NewTBufferedTransportFactory(4096)
	if p.transport == "framed" {
		tf = thrift.NewTFramedTransportFactoryConf(thrift.NewTTransportFactory(), cfg)
	}
	var pf thrift.TProtocolFactory = thrift.NewTBinaryProtocolFactoryConf(cfg)
	if p.compact {
		pf = thrift.NewTCompactProtocolFactoryConf(cfg)
	}
	return tf, pf
}

// server is a generated Echo processor in the library's TSimpleServer.
type server struct {
	name  string
	fired atomic.Int32
}

func (s *server) Ping(ctx context.Context, msg string) (string, error) {
	if route, ok := thrift.GetHeader(ctx, "x-route"); ok {
		return fmt.Sprintf("%s: pong %s route=%s", s.name, msg, route), nil
	}
	return fmt.Sprintf("%s: pong %s", s.name, msg), nil
}

func (s *server) Fire(ctx context.Context, x string) error {
	s.fired.Add(1)
	return nil
}

func (s *server) Echo(ctx context.Context, p *echo.Payload) (*echo.Payload, error) {
	if p.Text == "oops" {
		return nil, &echo.Oops{Why: s.name + " says oops"}
	}
	p.Text = s.name + ": " + p.Text
	return p, nil
}

func serve(t *testing.T, p peer, name string) (*server, string) {
	t.Helper()
	h := &server{name: name}
	mp := thrift.NewTMultiplexedProcessor()
	mp.RegisterProcessor("Echo", echo.NewEchoProcessor(h))
	mp.RegisterDefault(echo.NewEchoProcessor(h))
	ss, err := thrift.NewTServerSocket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.Listen(); err != nil {
		t.Fatal(err)
	}
	tf, pf := p.factories()
	srv := thrift.NewTSimpleServer4(mp, ss, tf, pf)
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() { _ = srv.Stop() })
	_, port, err := net.SplitHostPort(ss.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return h, port
}

// client is a generated client on its own connection, with the standard
// client under it (for calls the IDL does not have) and a multiplexed one.
type client struct {
	*echo.EchoClient
	std *thrift.TStandardClient
	mux *echo.EchoClient
}

func dial(t *testing.T, p peer, addr string) client {
	t.Helper()
	cfg := p.config()
	cfg.ConnectTimeout, cfg.SocketTimeout = 5*time.Second, 10*time.Second
	sock := thrift.NewTSocketConf(addr, cfg)
	if err := sock.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	tf, pf := p.factories()
	trans, err := tf.GetTransport(sock)
	if err != nil {
		t.Fatal(err)
	}
	prot := pf.GetProtocol(trans)
	std := thrift.NewTStandardClient(prot, prot)
	return client{
		EchoClient: echo.NewEchoClient(std),
		std:        std,
		mux:        echo.NewEchoClient(thrift.NewTStandardClient(prot, thrift.NewTMultiplexedProtocol(prot, "Echo"))),
	}
}

var interopPeers = []peer{
	{name: "binary_framed", transport: "framed"},
	{name: "compact_framed", transport: "framed", compact: true},
	{name: "binary_unframed", transport: "unframed"},
	{name: "compact_header", transport: "header", compact: true},
	{name: "binary_header", transport: "header"},
}

// TestInterop: the library's generated Go client talks to two generated Go
// servers through the proxy. Calls are routed by method (and by THeader info
// header), declared exceptions pass through, a call with no route gets the
// proxy's UNKNOWN_METHOD TApplicationException and the connection goes on,
// oneway calls arrive, and concurrent clients multiplexed on the proxy's
// upstream connections (seqids rewritten) each get their own answers.
func TestInterop(t *testing.T) {
	for _, p := range interopPeers {
		t.Run(p.name, func(t *testing.T) {
			_, portA := serve(t, p, "a")
			b, portB := serve(t, p, "b")
			extra := ""
			if p.transport == "header" {
				extra = canaryRoute
			}
			addr := proxytestStart(t, fmt.Sprintf(proxyConfig, extra, portA, portB))
			c := dial(t, p, addr)
			ctx := context.Background()

			if v, err := c.Ping(ctx, "x"); err != nil || v != "a: pong x" {
				t.Fatalf("ping: %q, %v", v, err)
			}
			if v, err := c.mux.Ping(ctx, "m"); err != nil || v != "a: pong m" {
				t.Fatalf("multiplexed ping: %q, %v", v, err)
			}
			pl, err := c.Echo(ctx, &echo.Payload{Text: "hi", Tags: []string{"t"}, Inner: &echo.Inner{S: []int32{1, 2}}})
			if err != nil || pl.Text != "b: hi" || len(pl.Inner.S) != 2 {
				t.Fatalf("echo: %v, %v", pl, err)
			}
			var oops *echo.Oops
			if _, err := c.Echo(ctx, &echo.Payload{Text: "oops"}); !errors.As(err, &oops) || oops.Why != "b says oops" {
				t.Fatalf("echo oops: %v, want b's declared exception", err)
			}
			var ae thrift.TApplicationException
			_, err = c.std.Call(ctx, "nosuch", &echo.EchoPingArgs{Msg: "?"}, echo.NewEchoPingResult())
			// The servers would say "Unknown function nosuch"; the proxy
			// answers first, with its own detail.
			if !errors.As(err, &ae) || ae.TypeId() != thrift.UNKNOWN_METHOD || ae.Error() == "" || strings.Contains(ae.Error(), "Unknown function") {
				t.Fatalf("nosuch: %v, want the proxy's UNKNOWN_METHOD exception", err)
			}
			t.Logf("no route: %v", ae)
			if err := c.Fire(ctx, "bang"); err != nil {
				t.Fatalf("fire: %v", err)
			}
			if v, err := c.Ping(ctx, "again"); err != nil || v != "a: pong again" {
				t.Fatalf("ping after no route and oneway: %q, %v", v, err)
			}
			testutil.Eventually(t, 5*time.Second, "the oneway call to reach server b", func() bool { return b.fired.Load() > 0 })
			if p.transport == "header" {
				hctx := thrift.SetWriteHeaderList(thrift.SetHeader(ctx, "x-canary", "yes"), []string{"x-canary"})
				if v, err := c.Ping(hctx, "c"); err != nil || v != "b: pong c route=canary" {
					t.Fatalf("canary ping: %q, %v", v, err)
				}
			}
			concurrent(t, p, addr)
		})
	}
}

// concurrent runs several clients at once; their seqids collide (each starts
// at 1), so the proxy must rewrite them on the shared upstream connections.
func concurrent(t *testing.T, p peer, addr string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		c := dial(t, p, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				msg := fmt.Sprintf("g%d-%d-%s", g, i, strings.Repeat("x", i*7))
				v, err := c.Ping(context.Background(), msg)
				if err == nil && v != "a: pong "+msg {
					err = fmt.Errorf("ping %s answered %s", msg, v)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
