package kubeenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Command is a binary to run with its output in a log file.
type Command struct {
	// Name names the process in messages.
	Name string
	Path string
	Args []string
	// Env is added to the test process's environment.
	Env []string
	// Dir is the working directory; empty for the test's own.
	Dir string
	// Log is the log file; output is appended, so a restarted process
	// keeps one log.
	Log string
}

// Process is a running Command.
type Process struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	// exited is closed once the process has exited and its log is closed.
	exited chan struct{}
}

// Start starts cmd.
func Start(c Command) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(c.Log), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(c.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	p := &Process{Name: c.Name, Log: c.Log, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // a killed process exits with an error, as expected
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// StartT starts cmd for the test t: stopped when the test ends, with the
// tail of its log in the test's output if the test failed.
func StartT(t testing.TB, c Command) *Process {
	t.Helper()
	p, err := Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("%s log (%s):\n%s", p.Name, p.Log, p.LogTail(4000))
		}
	})
	return p
}

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Kill ends the process as a crash would and waits for it.
func (p *Process) Kill() {
	if p.Running() {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// Stop sends SIGTERM and waits up to grace before killing the process.
func (p *Process) Stop(grace time.Duration) {
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.Kill()
	}
}

// LogTail returns the last n bytes of the process's log.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return err.Error()
	}
	return string(Tail(b, n))
}

// Tail returns the last n bytes of b.
func Tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// FreePort returns a loopback TCP port that was free a moment ago, for
// binaries that take a port number and cannot report the one they bound.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// MustFreePort is FreePort, failing the test on error.
func MustFreePort(t testing.TB) int {
	t.Helper()
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FreeAddr is MustFreePort as "127.0.0.1:port".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", MustFreePort(t))
}

// Poll checks its condition after 10 ms, then twice as long each time up
// to 200 ms: a server polled while it starts (istiod logs every /ready it
// refuses) sees a few requests, not hundreds.
const (
	pollFirst = 10 * time.Millisecond
	pollMax   = 200 * time.Millisecond
)

// errNotYet is what Poll reports when its condition never held and
// never said why.
var errNotYet = errors.New("condition not met")

// Poll calls cond until it returns true or within has passed, and then
// returns an error naming what and the last error cond returned. It is
// for TestMain, and for tests that report more than a timeout; otherwise
// tests use testutil.Eventually.
func Poll(within time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(within)
	for wait := pollFirst; ; wait = min(2*wait, pollMax) {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errNotYet
			}
			return fmt.Errorf("timed out after %v waiting for %s: %w", within, what, err)
		}
		time.Sleep(wait)
	}
}

// Unavailable ends a test whose dependency (what) is missing: it fails
// under CI=true, where make test has built everything first, and skips
// otherwise.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s cannot run: %v", what, err)
	}
	t.Skipf("%s skipped: %v", what, err)
}

// joinArgs renders a command line for messages.
func joinArgs(args []string) string { return strings.Join(args, " ") }
