// Package testutil is the one toolkit the tests of the main module and of
// the e2e modules share (an e2e module's import path is under the main
// module's, so Go's internal rule lets it import this package):
//
//   - waiting: Poll and MustPoll (a condition with a reason, failing with
//     the last one), Eventually (a plain condition); never a bare sleep;
//   - ports: servers listen on port 0 and report what they got (Listen,
//     Accept, Port); OnFreePorts is the one way to give a port to a server
//     that cannot, retrying when another process took it first;
//   - processes: StartT runs a binary with its output in a log, stops it
//     when the test ends and shows the log's tail if the test failed;
//     Process.Ready and Process.WaitLog wait for it;
//   - readiness: Dialable, HTTPOK and WaitDialable for a peer to come up;
//   - peers: RedisServer, TCPPair, the Lines codec, BadPeer (a server
//     that stalls, resets or is down) and Envoy's rate limit service
//     (StartRateLimitService, Scrape);
//   - binaries: GoBuild (Build without a test), CtlCall (rosettactl call);
//   - proxy scenarios: ListenerConfig (one listener's config), Outcome
//     (n calls, how many failed), RetryOn (retry_on through any client).
package testutil

import (
	"net"
	"testing"
)

// TCPPair returns both ends of a loopback TCP connection, closed when the
// test ends.
func TCPPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Accept listens on a loopback port until the test ends and hands every
// connection it accepts to serve, on a goroutine of its own; it returns the
// address.
func Accept(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(nc)
		}
	}()
	return ln.Addr().String()
}
