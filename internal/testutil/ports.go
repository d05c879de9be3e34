package testutil

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
)

// Listen listens on a loopback port the kernel picks (port 0) until the
// test ends. A server in the test process takes this listener, or listens
// on "127.0.0.1:0" itself, and reports the address it got: nothing probes
// for a free port and races another process for it.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testutil: listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Port returns the port of a "host:port" address.
func Port(t testing.TB, addr string) int {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatalf("testutil: port of %q: %v", addr, err)
	}
	return a.Port
}

// maxPortTries bounds the starts OnFreePorts makes.
const maxPortTries = 5

// OnFreePorts is for a server that must be given its ports before it
// starts and cannot report the ones it bound: an external binary that
// takes a port number (redis-server, etcd) or a config that names a
// listener's port (a Service port is part of the names a controller
// generates). It calls start with n distinct loopback ports that were free
// a moment ago; another process may bind one in between, so when start's
// error says a port was taken (AddrInUse), it calls start again with new
// ports. Any other error fails the test. start stops what it started when
// the test ends (StartT does), including a failed try.
func OnFreePorts[T any](t testing.TB, n int, start func(ports []int) (T, error)) T {
	t.Helper()
	s, err := WithFreePorts(n, start)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return s
}

// WithFreePorts is OnFreePorts for code without a test (TestMain): it
// returns start's last error.
func WithFreePorts[T any](n int, start func(ports []int) (T, error)) (T, error) {
	var s T
	var err error
	for range maxPortTries {
		var ports []int
		if ports, err = freePorts(n); err != nil {
			return s, err
		}
		if s, err = start(ports); err == nil || !AddrInUse(err) {
			return s, err
		}
	}
	return s, err
}

// FreePort returns a loopback port that was free a moment ago, for a port
// that ends up in objects a test builds its scenario on (a Kubernetes
// Service port that a proxy binds after its xDS update), where trying
// again would mean building the scenario again. A port taken in between
// fails the test with the bind error in the proxy's log. Servers that can
// take port 0 do; binaries given ports on their command line start
// through OnFreePorts.
func FreePort(t testing.TB) int {
	t.Helper()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return ports[0]
}

// freePorts returns n distinct ports the kernel gave out for port 0; all
// are held open until all are picked, so none repeats.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// AddrInUse reports whether err says a port was taken: EADDRINUSE from
// this process, or the words a process put in its log (Go, redis-server,
// etcd and the API server all write "address already in use").
func AddrInUse(err error) bool {
	return err != nil && (errors.Is(err, syscall.EADDRINUSE) ||
		strings.Contains(strings.ToLower(err.Error()), "address already in use"))
}
