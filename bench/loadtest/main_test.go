package main

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/bench/load"
	"github.com/rosetta-mesh/rosetta/pkg/hbone"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

// The Dubbo driver's client and provider work on connections it makes.
func TestDubboDriver(t *testing.T) {
	addr, stop, err := dubbo{}.Serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c, err := dubbo{}.Dial(addr, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	callMany(t, c, 20)
}

// The Dubbo driver's client and provider work on TLS connections the
// harness makes, the provider echoes the payload, and a closed client's
// calls fail rather than wait.
func TestDubboConnDriverOverTLS(t *testing.T) {
	ca := identitytest.NewCA("test")
	cert, err := tls.X509KeyPair(ca.Leaf("spiffe://cluster.local/ns/demo/sa/echo", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop, err := dubbo{}.ServeListener(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}), 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	dialTLS := func() net.Conn {
		nc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}

	c, err := dubbo{}.DialConn(dialTLS(), 1024)
	if err != nil {
		t.Fatal(err)
	}
	callMany(t, c, 50)
	c.Close()
	if err := c.Call(); err == nil {
		t.Error("a call on a closed client succeeded")
	}

	peer := dubbopeer.NewConsumer(dialTLS())
	defer peer.Close()
	payload := strings.Repeat("x", 1024)
	v, _, err := peer.Call(context.Background(), dubbopeer.Service{Interface: echoInterface}, "echo", []any{payload}, nil)
	if err != nil || v != payload {
		t.Fatalf("echo: %.20v, %v; want the payload back", v, err)
	}
}

// callMany makes n calls at once on c; all must succeed.
func callMany(t *testing.T, c load.Client, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.Call()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// The harness's HBONE client makes Dubbo calls through CONNECT streams on
// one HTTP/2 connection to an HBONE server, with the caller's identity
// (the server sees its principal), and a CONNECT the server refuses is an
// error.
func TestDubboOverHBONE(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ca := identitytest.NewCA("test")
	const waypoint = "spiffe://cluster.local/ns/demo/sa/rosetta-waypoint"
	server, _ := workload(ctx, t, ca, waypoint)
	_, caller := workload(ctx, t, ca, "spiffe://cluster.local/ns/shop/sa/frontend")

	streams := &streamListener{conns: make(chan net.Conn), done: make(chan struct{})}
	stop, err := dubbo{}.ServeListener(streams, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var principals sync.Map
	srv := &hbone.Server{
		TLS: hbone.ServerTLS(server),
		Open: func(r hbone.Request) (func(net.Conn), string) {
			if r.Destination.String() != "10.96.0.1:20880" {
				return nil, hbone.RefusedUnknownAuthority
			}
			principals.Store(r.Principal, true)
			return func(nc net.Conn) { go streams.hand(nc) }, ""
		},
		Limits: hbone.DefaultLimits(),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Shutdown(ctx)

	conn, err := dialHBONE(ln.Addr().String(), caller(waypoint))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 3 {
		nc, err := conn.Connect("10.96.0.1:20880")
		if err != nil {
			t.Fatal(err)
		}
		c, err := dubbo{}.DialConn(nc, 1024)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		callMany(t, c, 20)
	}
	if _, err := conn.Connect("10.96.0.2:20880"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("CONNECT to a destination the server refuses: %v; want an error naming 503", err)
	}
	if _, ok := principals.Load("cluster.local/ns/shop/sa/frontend"); !ok {
		t.Error("the server did not see the caller's principal")
	}
}

// workload is the TLS configs of a workload of ca with SPIFFE ID id, from
// files as the command reads them.
func workload(ctx context.Context, t *testing.T, ca *identitytest.CA, id string) (*tls.Config, func(string) *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	cert, key := ca.Leaf(id, time.Hour)
	for name, data := range map[string][]byte{"cert-chain.pem": cert, "key.pem": key, "root-cert.pem": ca.PEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	server, client, err := istioIdentity(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

// streamListener accepts the streams an HBONE server hands it.
type streamListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *streamListener) hand(nc net.Conn) {
	select {
	case l.conns <- nc:
	case <-l.done:
		nc.Close()
	}
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case nc := <-l.conns:
		return nc, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *streamListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *streamListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(10, 96, 0, 1), Port: 20880}
}
