package testutil

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BadPeer is a socket that takes a server's place in a cluster and
// misbehaves as a server can, for tests of retries: it stalls (reads and
// never answers), resets (reads, then closes with RST), or is down
// (nothing listens). It speaks no protocol, so it serves every codec.
type BadPeer struct {
	Addr string
	// Reads counts the reads that brought a request's bytes.
	Reads atomic.Int64
}

// badPeerLife bounds a bad peer's connection, so a test that forgets one
// does not hang on it.
const badPeerLife = 30 * time.Second

// StallingPeer accepts and reads, never answering.
func StallingPeer(t testing.TB) *BadPeer {
	return serveBad(t, func(c net.Conn, p *BadPeer) {
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			p.Reads.Add(1)
		}
	})
}

// ResettingPeer reads a request, waits (so the requests sent with it are
// in flight too), then resets the connection.
func ResettingPeer(t testing.TB, wait time.Duration) *BadPeer {
	return serveBad(t, func(c net.Conn, p *BadPeer) {
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return
		}
		p.Reads.Add(1)
		time.Sleep(wait)
		_ = c.(*net.TCPConn).SetLinger(0)
	})
}

// DownPeer is an address nothing listens on.
func DownPeer(t testing.TB) *BadPeer {
	ln := Listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return &BadPeer{Addr: addr}
}

func serveBad(t testing.TB, serve func(net.Conn, *BadPeer)) *BadPeer {
	ln := Listen(t)
	p := &BadPeer{Addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				go func() { <-time.After(badPeerLife); c.Close() }()
				serve(c, p)
			}()
		}
	}()
	return p
}
