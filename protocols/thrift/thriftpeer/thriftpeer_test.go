package thriftpeer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	_ "github.com/rosetta-mesh/rosetta/protocols/thrift" // registers the codec for the proxy tests
	"github.com/rosetta-mesh/rosetta/protocols/thrift/thriftpeer"
)

func serve(t testing.TB, name string, f thriftpeer.Format) *thriftpeer.Server {
	t.Helper()
	s, err := thriftpeer.Serve("127.0.0.1:0", name, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t testing.TB, addr string, f thriftpeer.Format) *thriftpeer.Client {
	t.Helper()
	c, err := thriftpeer.Dial(addr, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialLoad(t testing.TB, addr string, payload int) *thriftpeer.LoadClient {
	t.Helper()
	c, err := thriftpeer.DialLoad(addr, payload)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var formats = []thriftpeer.Format{
	{},
	{Transport: "buffered", Protocol: "compact"},
	{Transport: "header", Protocol: "binary"},
	{Transport: "header", Protocol: "compact"},
}

// TestCalls: in every format, the generated client and server exchange
// ping, echo, a declared exception, an unknown method (the library's
// UNKNOWN_METHOD, after which the connection still works) and a oneway
// call, and every answer names the server.
func TestCalls(t *testing.T) {
	ctx := context.Background()
	for _, f := range formats {
		t.Run(strings.ReplaceAll(f.String(), " ", "_"), func(t *testing.T) {
			s := serve(t, "srv-a", f)
			if s.Format().String() != f.String() || s.Name() != "srv-a" {
				t.Errorf("server format %v name %q", s.Format(), s.Name())
			}
			c := dial(t, s.Addr(), f)
			got, err := c.Ping(ctx, "hi")
			if err != nil || got != "srv-a: pong hi" || thriftpeer.Answerer(got) != "srv-a" {
				t.Fatalf("ping: %q, %v", got, err)
			}
			text, blob, err := c.Echo(ctx, "hello", []byte{0, 1, 0xff})
			if err != nil || text != "srv-a: hello" || !bytes.Equal(blob, []byte{0, 1, 0xff}) {
				t.Fatalf("echo: %q %x %v", text, blob, err)
			}
			var ex *thriftpeer.Exception
			if _, _, err := c.Echo(ctx, "oops", nil); !errors.As(err, &ex) || ex.Why != "srv-a: oops" {
				t.Fatalf("oops: %v", err)
			}
			_, err = c.Call(ctx, "nosuch", "x")
			ae, ok := thriftpeer.ApplicationError(err)
			if !ok || ae.TypeId() != thrift.UNKNOWN_METHOD || thriftpeer.ApplicationErrorName(ae.TypeId()) != "UNKNOWN_METHOD" {
				t.Fatalf("unknown method: %v", err)
			}
			if err := c.Fire(ctx, "x"); err != nil {
				t.Fatal(err)
			}
			if got, err := c.Call(ctx, "ping", "again"); err != nil || got != "srv-a: pong again" {
				t.Fatalf("ping after errors: %q, %v", got, err)
			}
			testutil.Eventually(t, 10*time.Second, "fire arrives", func() bool { return s.Fired() == 1 })
			if s.Calls() != 4 {
				t.Errorf("server counted %d calls, want 4", s.Calls())
			}
		})
	}
}

// TestClientConcurrent: one Client used by many goroutines takes turns and
// every call gets its own answer.
func TestClientConcurrent(t *testing.T) {
	s := serve(t, "a", thriftpeer.Format{})
	c := dial(t, s.Addr(), thriftpeer.Format{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				msg := fmt.Sprintf("%d-%d", g, i)
				if got, err := c.Ping(context.Background(), msg); err != nil || got != "a: pong "+msg {
					errs <- fmt.Errorf("ping %s: %q, %v", msg, got, err)
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

// TestBadFormat: unknown transports and protocols are refused by name.
func TestBadFormat(t *testing.T) {
	for _, f := range []thriftpeer.Format{{Transport: "zmq"}, {Protocol: "json"}} {
		if _, err := thriftpeer.Serve("127.0.0.1:0", "x", f); err == nil || !strings.Contains(err.Error(), "unknown") {
			t.Errorf("Serve %+v: %v", f, err)
		}
		if _, err := thriftpeer.Dial("127.0.0.1:1", f); err == nil || !strings.Contains(err.Error(), "unknown") {
			t.Errorf("Dial %+v: %v", f, err)
		}
	}
}

// TestCloseWithIdleClient: Close returns while a client holds an idle
// connection (the library's Stop alone would wait for it), and the client's
// next call fails rather than hangs.
func TestCloseWithIdleClient(t *testing.T) {
	s, err := thriftpeer.Serve("127.0.0.1:0", "a", thriftpeer.Format{})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.Addr(), thriftpeer.Format{})
	if _, err := c.Ping(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked on an idle connection")
	}
	if _, err := c.Ping(context.Background(), "x"); err == nil {
		t.Fatal("a call to a closed server succeeded")
	}
	if _, err := c.Ping(context.Background(), "x"); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("the broken client's next call: %v", err)
	}
}

// TestLoadClient: many goroutines share one LoadClient connection; every
// call is answered and the server saw each one.
func TestLoadClient(t *testing.T) {
	s := serve(t, "a", thriftpeer.Format{})
	c := dialLoad(t, s.Addr(), 1024)
	runLoad(t, c, 16, 100)
	if s.Calls() != 1600 {
		t.Errorf("server answered %d calls, want 1600", s.Calls())
	}
}

func runLoad(t *testing.T, c *thriftpeer.LoadClient, goroutines, calls int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if err := c.Call(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

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
        codec_options: {transport: framed, protocol: binary}
        route_config_name: r
routes:
- name: r
  routes:
  - name: to-a
    match: {attributes: [{name: method, exact: %s}]}
    route: {cluster: a, timeout: 3s}
clusters:
- name: a
  connect_timeout: 1s
  load_assignment:
    cluster_name: a
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]
`

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// TestLoadClientThroughProxy: through a Rosetta proxy, which rewrites
// seqids and multiplexes, replies still find their calls; with no route
// for echo every call fails with the proxy's UNKNOWN_METHOD exception,
// decoded by the library.
func TestLoadClientThroughProxy(t *testing.T) {
	s := serve(t, "a", thriftpeer.Format{})
	px := proxytest.Start(t, fmt.Sprintf(proxyConfig, "echo", port(s.Addr())))
	c := dialLoad(t, px.Addr(t, "thrift"), 100)
	runLoad(t, c, 16, 50)
	if s.Calls() != 800 {
		t.Errorf("server answered %d calls, want 800", s.Calls())
	}

	px2 := proxytest.Start(t, fmt.Sprintf(proxyConfig, "ping", port(s.Addr())))
	c2 := dialLoad(t, px2.Addr(t, "thrift"), 100)
	ae, ok := thriftpeer.ApplicationError(c2.Call())
	if !ok || ae.TypeId() != thrift.UNKNOWN_METHOD {
		t.Fatalf("no route: got %v", ae)
	}
	if err := c2.Call(); err == nil {
		t.Fatal("second unrouted call succeeded")
	}
}

// TestLoadClientBadReplies: replies that are not what a LoadClient sent
// for fail its calls with an error, never a panic or a hang.
func TestLoadClientBadReplies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply []byte
		want  string
	}{
		{"huge frame", []byte{0x7f, 0xff, 0xff, 0xff}, "exceeds"},
		{"not binary", []byte{0, 0, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, "not a strict binary"},
		{"name overrun", []byte{0, 0, 0, 12, 0x80, 1, 0, 2, 0x7f, 0, 0, 0, 0, 0, 0, 0}, "overruns"},
		{"short frame", []byte{0, 0, 0, 10, 0x80, 1}, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				buf := make([]byte, 4096)
				if _, err := conn.Read(buf); err == nil {
					_, _ = conn.Write(tc.reply)
				}
			}()
			c := dialLoad(t, ln.Addr().String(), 10)
			if err := c.Call(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if err := c.Call(); err == nil {
				t.Fatal("a call after the failure succeeded")
			}
		})
	}
	if _, err := thriftpeer.DialLoad("127.0.0.1:1", -1); err == nil {
		t.Error("a negative payload was accepted")
	}
}

// BenchmarkEchoOneConn compares the two ways to load one connection with
// concurrent echo calls of 1 KiB: the generated client behind a mutex (one
// call at a time) and the LoadClient (all in flight).
func BenchmarkEchoOneConn(b *testing.B) {
	s := serve(b, "a", thriftpeer.Format{})
	blob := bytes.Repeat([]byte{'x'}, 1024)
	b.Run("generated-mutex", func(b *testing.B) {
		c := dial(b, s.Addr(), thriftpeer.Format{})
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := c.Echo(context.Background(), "", blob); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("load-client", func(b *testing.B) {
		c := dialLoad(b, s.Addr(), 1024)
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := c.Call(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
