package redis

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// TestHostileClientsAreClosedAtTheBudget: connections that each send all
// but the last 100 KB of a 4 MB SET, and one that trickles a command,
// are closed at the proxy's buffer budget and frame time, and give the
// budget back, while go-redis keeps getting answers on the same listener.
func TestHostileClientsAreClosedAtTheBudget(t *testing.T) {
	a := startServer(t)
	lim := proxy.DefaultLimits()
	lim.BufferBudget = 8 << 20
	lim.FrameTimeout = time.Second
	p := proxytest.StartWithLimits(t, listenerConfig(t, nil, []obj{prefixRoute("all", "", "a", nil)}, clusterConfig("a", a.Addr)), lim)
	addr := p.Addr(t, "redis")
	c, cx := client(t, addr), ctx(t)

	stop := make(chan struct{})
	var steady sync.WaitGroup
	steady.Add(1)
	var calls int
	go func() {
		defer steady.Done()
		for ; ; calls++ {
			select {
			case <-stop:
				return
			default:
			}
			k, v := fmt.Sprint("steady:", calls), fmt.Sprint(calls)
			if err := c.Set(cx, k, v, 0).Err(); err != nil {
				t.Errorf("SET %s during the attack: %v", k, err)
				return
			}
			if got, err := c.Get(cx, k).Result(); err != nil || got != v {
				t.Errorf("GET %s during the attack: %q, %v", k, got, err)
				return
			}
		}
	}()

	trickler := trickleCommand(t, addr)
	head := "*3\r\n$3\r\nSET\r\n$4\r\nhuge\r\n$4000000\r\n"
	body := bytes.Repeat([]byte("x"), 4000000-100000)
	var flood sync.WaitGroup
	for range 20 {
		flood.Add(1)
		go func() {
			defer flood.Done()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			_, _ = nc.Write(append([]byte(head), body...)) // may be cut off at the budget
			if !closedBy(nc, 10*time.Second) {
				t.Error("a connection holding most of a 4 MB command was still open past the frame time")
			}
		}()
	}
	flood.Wait()
	if !closedBy(trickler, 10*time.Second) {
		t.Error("a connection trickling a command was still open past the frame time")
	}
	close(stop)
	steady.Wait()
	if calls == 0 {
		t.Fatal("go-redis made no call during the attack")
	}
	m := p.Get(t, "/metrics")
	for _, limit := range []string{"buffer_budget", "frame_timeout"} {
		if !strings.Contains(m, `rosetta_downstream_connections_closed_by_limit_total{limit="`+limit+`",listener="redis"}`) {
			t.Errorf("no connection counted as closed by %s", limit)
		}
	}
	testutil.Eventually(t, 5*time.Second, "the budget to be given back", func() bool {
		return strings.Contains(p.Get(t, "/metrics"), "\nrosetta_buffer_budget_bytes_in_use 0\n")
	})
	if err := c.Ping(cx).Err(); err != nil {
		t.Fatalf("PING after the attack: %v", err)
	}
}

// trickleCommand opens a connection that sends a SET a byte every 100 ms.
func trickleCommand(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	cmd := "*3\r\n$3\r\nSET\r\n$1\r\nt\r\n$1000\r\n" + strings.Repeat("t", 1000) + "\r\n"
	go func() {
		for i := range len(cmd) {
			if _, err := nc.Write([]byte{cmd[i]}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return nc
}

// closedBy reports whether the peer closes nc within d.
func closedBy(nc net.Conn, d time.Duration) bool {
	_ = nc.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		if _, err := nc.Read(buf); err != nil {
			ne, ok := err.(net.Error)
			return !ok || !ne.Timeout()
		}
	}
}
