// Command loadtest runs the load harness (package bench/load) for the
// protocols whose peers live in the main module (Dubbo and Thrift; tRPC's is
// e2e/trpc/cmd/trpcload), and Dubbo over Istio mutual TLS and HBONE (-tls,
// on by default). `make bench` runs it.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rosetta-mesh/rosetta/bench/load"
	"github.com/rosetta-mesh/rosetta/pkg/hbone"
	"github.com/rosetta-mesh/rosetta/pkg/hbone/hbonetest"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
	"github.com/rosetta-mesh/rosetta/protocols/thrift/thriftpeer"
)

func main() {
	var o load.Options
	o.RegisterFlags(flag.CommandLine)
	protocols := flag.String("protocols", "dubbo,thrift", "comma-separated protocols to measure: "+strings.Join(names(), ", "))
	mtls := flag.Bool("tls", true, "also measure Dubbo over Istio mutual TLS: the plaintext proxy, the proxy without event loops, the proxy with mTLS both sides and with 20 authorization rules, the proxy terminating HBONE and originating mTLS, haproxy terminating and originating TLS")
	flag.Parse()
	for _, p := range strings.Split(*protocols, ",") {
		d, ok := drivers[p]
		if !ok {
			fmt.Fprintf(os.Stderr, "loadtest: unknown protocol %q (have %s)\n", p, strings.Join(names(), ", "))
			os.Exit(2)
		}
		if err := load.Run(d, o, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		fmt.Println()
		if cd, ok := d.(load.ConnDriver); ok && *mtls {
			if err := load.RunMTLS(cd, o, load.Istio{Identity: istioIdentity, HBONE: dialHBONE}, os.Stdout); err != nil {
				fmt.Fprintln(os.Stderr, "loadtest: mTLS:", err)
				os.Exit(1)
			}
			fmt.Println()
		}
	}
}

var drivers = map[string]load.Driver{"dubbo": dubbo{}, "thrift": thriftDriver{}}

// istioIdentity is a workload identity from files with pkg/identity's
// Istio mTLS configs (the same code the proxy runs), for load.RunMTLS.
func istioIdentity(ctx context.Context, dir string) (*tls.Config, func(san string) *tls.Config, error) {
	w := identity.NewWorkload(&identity.FileSource{
		CertFile: filepath.Join(dir, "cert-chain.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
		RootFile: filepath.Join(dir, "root-cert.pem"),
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := w.Start(ctx); err != nil {
		return nil, nil, err
	}
	return identity.ServerConfig(w), func(san string) *tls.Config { return identity.ClientConfig(w, []string{san}, "") }, nil
}

var _ load.Identity = istioIdentity

// dialHBONE connects to an HBONE port with hbonetest, ztunnel's part in
// tests: cfg, the caller's Istio client config, with HBONE's ALPN.
func dialHBONE(addr string, cfg *tls.Config) (load.HBONEConn, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{hbone.ALPN}
	c, err := hbonetest.Dial(addr, cfg)
	if err != nil {
		return nil, err
	}
	return hboneConn{c}, nil
}

var _ load.HBONEDialer = dialHBONE

// hboneConn makes a refused CONNECT an error. Its streams
// (hbonetest.Tunnel) do not support deadlines, which the drivers'
// clients never set.
type hboneConn struct{ c *hbonetest.Conn }

func (h hboneConn) Connect(authority string) (net.Conn, error) {
	t, status, err := h.c.Connect(authority)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("hbone: CONNECT %s answered %d", authority, status)
	}
	return t, nil
}

func (h hboneConn) Close() error { return h.c.Close() }

func names() []string {
	out := make([]string, 0, len(drivers))
	for n := range drivers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// dubbo drives Dubbo echo calls with the hessian2-based dubbopeer: a
// consumer making prepared calls and a provider echoing the payload, over
// connections it dials and listens on itself (Dial, Serve) or the harness's
// TLS ones (DialConn, ServeListener).
type dubbo struct{}

const echoInterface = "org.rosetta.bench.Echo"

var _ load.ConnDriver = dubbo{}

func (dubbo) Name() string                       { return "Dubbo" }
func (dubbo) Codec() (string, map[string]string) { return "dubbo", nil }
func (dubbo) Match() (string, string)            { return "method", "echo" }
func (dubbo) Dial(addr string, payload int) (load.Client, error) {
	c, err := dubbopeer.Dial(addr)
	if err != nil {
		return nil, err
	}
	return newDubboClient(c, payload)
}

func (dubbo) DialConn(nc net.Conn, payload int) (load.Client, error) {
	return newDubboClient(dubbopeer.NewConsumer(nc), payload)
}

func (dubbo) Serve() (string, func(), error) {
	p, err := dubbopeer.Serve("127.0.0.1:0", "echo", echoArg)
	if err != nil {
		return "", nil, err
	}
	return p.Addr(), func() { p.Close() }, nil
}

func (dubbo) ServeListener(ln net.Listener, _ int) (func(), error) {
	p := dubbopeer.ServeListener(ln, "echo", echoArg)
	return func() { p.Close() }, nil
}

// echoArg answers a call with its argument.
func echoArg(_ context.Context, r *dubbopeer.Request) (any, error) { return r.Args[0], nil }

func newDubboClient(c *dubbopeer.Consumer, payload int) (load.Client, error) {
	req, err := dubbopeer.Prepare(dubbopeer.Service{Interface: echoInterface}, "echo", []any{strings.Repeat("x", payload)}, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &dubboClient{c: c, req: req}, nil
}

type dubboClient struct {
	c   *dubbopeer.Consumer
	req *dubbopeer.Prepared
}

func (d *dubboClient) Call() error  { return d.c.CallPrepared(context.Background(), d.req) }
func (d *dubboClient) Close() error { return d.c.Close() }

// thriftDriver drives Thrift echo calls, framed strict binary, with the
// generated Echo server and thriftpeer's LoadClient (the call encoded once
// by the generated code, many in flight per connection, paired by seqid).
type thriftDriver struct{}

func (thriftDriver) Name() string { return "Thrift (framed binary)" }
func (thriftDriver) Codec() (string, map[string]string) {
	return "thrift", map[string]string{"transport": "framed", "protocol": "binary"}
}
func (thriftDriver) Match() (string, string) { return "method", "echo" }
func (thriftDriver) Dial(addr string, payload int) (load.Client, error) {
	return thriftpeer.DialLoad(addr, payload)
}

func (thriftDriver) Serve() (string, func(), error) {
	s, err := thriftpeer.Serve("127.0.0.1:0", "echo", thriftpeer.Format{})
	if err != nil {
		return "", nil, err
	}
	return s.Addr(), func() { s.Close() }, nil
}
