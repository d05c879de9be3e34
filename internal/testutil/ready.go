package testutil

import (
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// Conditions for Poll, MustPoll and Process.Ready: is a peer ready yet,
// and if not, why.

// readyTimeout bounds one readiness check, so a peer that accepts and then
// hangs costs one check, not the whole wait.
const readyTimeout = time.Second

// Dialable is ready once a TCP connection to addr opens.
func Dialable(addr string) func() (bool, error) {
	return func() (bool, error) {
		c, err := net.DialTimeout("tcp", addr, readyTimeout)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	}
}

// HTTPOK is ready once a GET of url answers 200 (a /ready or /readyz
// endpoint).
func HTTPOK(url string) func() (bool, error) {
	hc := &http.Client{Timeout: readyTimeout}
	return func() (bool, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return true, nil
	}
}

// readyWait is how long WaitDialable waits: a process on this busy
// machine may take seconds to start.
const readyWait = 20 * time.Second

// WaitDialable waits until addr accepts TCP connections, failing t
// otherwise.
func WaitDialable(t testing.TB, addr string) {
	t.Helper()
	if err := Poll(readyWait, addr+" to accept connections", Dialable(addr)); err != nil {
		t.Fatal(err)
	}
}
