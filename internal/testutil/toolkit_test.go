package testutil

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMustPollFailsWithTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	msg := r.fails(t, func() {
		MustPoll(r, 30*time.Millisecond, "the answer", func() (bool, error) {
			n++
			return false, fmt.Errorf("try %d", n)
		})
	})
	if !strings.Contains(msg, "the answer") || !strings.HasSuffix(msg, fmt.Sprintf("try %d", n)) {
		t.Fatalf("MustPoll said %q, want what it waited for and the last error (try %d)", msg, n)
	}
}

func TestPollReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	err := Poll(5*time.Second, "three checks", func() (bool, error) { n++; return n == 3, nil })
	if err != nil || n != 3 {
		t.Fatalf("Poll: %v after %d checks, want nil after 3", err, n)
	}
}

func TestOnFreePortsRetriesATakenPort(t *testing.T) {
	var tried [][]int
	got := OnFreePorts(t, 2, func(ports []int) (string, error) {
		tried = append(tried, ports)
		if len(tried) == 1 {
			return "", fmt.Errorf("bind: %w", syscall.EADDRINUSE)
		}
		return "started", nil
	})
	if got != "started" || len(tried) != 2 {
		t.Fatalf("OnFreePorts returned %q after %d starts, want started after 2", got, len(tried))
	}
	if tried[1][0] == tried[1][1] {
		t.Fatalf("ports %v repeat", tried[1])
	}
}

func TestOnFreePortsFailsOnOtherErrors(t *testing.T) {
	r := &recorder{TB: t}
	starts := 0
	msg := r.fails(t, func() {
		OnFreePorts(r, 1, func([]int) (int, error) { starts++; return 0, errors.New("bad flag") })
	})
	if starts != 1 || !strings.Contains(msg, "bad flag") {
		t.Fatalf("after %d starts OnFreePorts said %q, want one start and its error", starts, msg)
	}
}

func TestAddrInUseReadsLogs(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "listen", Err: syscall.EADDRINUSE}, true},
		{errors.New("redis exited\n# Warning: Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use"), true},
		{errors.New("exit status 1"), false},
		{nil, false},
	} {
		if got := AddrInUse(tc.err); got != tc.want {
			t.Errorf("AddrInUse(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestProcessReportsItsPortInItsLog(t *testing.T) {
	p := StartT(t, Command{Name: "sh", Path: "/bin/sh", Args: []string{"-c", "echo listening on 127.0.0.1:4242; sleep 30"}})
	m, err := p.WaitLog(5*time.Second, regexp.MustCompile(`listening on (\S+)`))
	if err != nil || m[1] != "127.0.0.1:4242" {
		t.Fatalf("WaitLog: %q, %v", m, err)
	}
}

func TestLoggedAddrReadsSlogTextAndJSON(t *testing.T) {
	p := StartT(t, Command{Name: "sh", Path: "/bin/sh", Args: []string{"-c",
		`echo 'time=x level=INFO msg="other thing" addr=127.0.0.1:1'; echo 'time=x level=INFO msg=serving xds=127.0.0.1:7 debug=""';
		echo '{"msg":"serving","http":"127.0.0.1:8","debug":""}'; sleep 30`}})
	for key, want := range map[string]string{"xds": "127.0.0.1:7", "http": "127.0.0.1:8"} {
		if got, err := p.LoggedAddr(5*time.Second, "serving", key); err != nil || got != want {
			t.Errorf("LoggedAddr(serving, %s) = %q, %v; want %s", key, got, err, want)
		}
	}
	if got, err := p.LoggedAddr(50*time.Millisecond, "serving", "debug"); err == nil {
		t.Errorf("LoggedAddr(serving, debug) = %q, want none: debug has no address", got)
	}
}

func TestReadyGivesUpWhenTheProcessExits(t *testing.T) {
	p := StartT(t, Command{Name: "sh", Path: "/bin/sh", Args: []string{"-c", "echo bind: address already in use; exit 1"}})
	start := time.Now()
	err := p.Ready(time.Minute, "to accept", func() (bool, error) { return false, nil })
	if !AddrInUse(err) || time.Since(start) > 10*time.Second {
		t.Fatalf("Ready on an exited process: %v after %v, want its log at once", err, time.Since(start))
	}
	if p.ExitErr() == nil {
		t.Fatal("exit 1 read as a clean exit")
	}
}

func TestWaitDialableSeesAListener(t *testing.T) {
	ln := Listen(t)
	WaitDialable(t, ln.Addr().String())
	if Port(t, ln.Addr().String()) == 0 {
		t.Fatal("port 0 reported")
	}
}

func TestRedisServerAnswers(t *testing.T) {
	addr := RedisServer(t)
	if ok, err := RedisAnswers(addr)(); !ok {
		t.Fatalf("redis-server at %s: %v", addr, err)
	}
}

func TestLoggedAddrSkipsAPredecessorsLines(t *testing.T) {
	log := t.TempDir() + "/proxy.log"
	say := func(addr string) *Process {
		return StartT(t, Command{Name: "sh", Path: "/bin/sh", Log: log, Args: []string{"-c", `echo '{"msg":"started","admin":"` + addr + `"}'; sleep 30`}})
	}
	first := say("127.0.0.1:1")
	if _, err := first.LoggedAddr(5*time.Second, "started", "admin"); err != nil {
		t.Fatal(err)
	}
	first.Kill()
	if got, err := say("127.0.0.1:2").LoggedAddr(5*time.Second, "started", "admin"); err != nil || got != "127.0.0.1:2" {
		t.Fatalf("the restarted process logged %q, %v; want its own address 127.0.0.1:2", got, err)
	}
}

func TestFreePortsAreDistinct(t *testing.T) {
	got := OnFreePorts(t, 3, func(ports []int) ([]int, error) { return ports, nil })
	if got[0] == got[1] || got[1] == got[2] || got[0] == got[2] || FreePort(t) == 0 {
		t.Fatalf("ports %v", got)
	}
}
