package main

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/bench/load"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

// The conn client's requests are ones dubbopeer's provider, which decodes
// them with the library's strict decoder, answers.
func TestConnClientCallsDubbopeer(t *testing.T) {
	p, err := dubbopeer.Serve("127.0.0.1:0", "echo", func(_ context.Context, r *dubbopeer.Request) (any, error) {
		if r.Interface != echoInterface || r.Method != "echo" || len(r.Args) != 1 || r.Args[0] != strings.Repeat("x", 100) {
			t.Errorf("provider got %s.%s%v", r.Interface, r.Method, r.Args)
		}
		return r.Args[0], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	nc, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	callMany(t, mustDialConn(t, nc, 100), 20)
}

// The conn provider's answers are ones dubbopeer's consumer decodes in full.
func TestConnProviderAnswersDubbopeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop, err := dubbo{}.ServeListener(ln, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c, err := dubbopeer.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, _, err := c.Call(context.Background(), dubbopeer.Service{Interface: echoInterface}, "echo", []any{"hi"}, nil)
	if err != nil || v != strings.Repeat("x", 100) {
		t.Fatalf("call: %v, %v; want 100 x", v, err)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("heartbeat: %v", err)
	}
}

func TestConnClientAndProviderOverTLS(t *testing.T) {
	ca := identitytest.NewCA("test")
	certPEM, keyPEM := ca.Leaf("spiffe://cluster.local/ns/demo/sa/echo", time.Hour)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
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
	nc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c := mustDialConn(t, nc, 1024)
	callMany(t, c, 50)
	// Closing the client ends its calls rather than leaving them waiting.
	c.Close()
	if err := c.Call(); err == nil {
		t.Error("a call on a closed client succeeded")
	}
}

func mustDialConn(t *testing.T, nc net.Conn, payload int) load.Client {
	t.Helper()
	c, err := dubbo{}.DialConn(nc, payload)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
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
