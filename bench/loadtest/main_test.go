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
