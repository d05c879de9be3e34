package testutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	// keeps one log. StartT defaults it to <Name>.log in a temporary
	// folder of the test.
	Log string
}

// Process is a running Command.
type Process struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	// from is where this process's output starts in Log: a restarted
	// process appends to its predecessor's log, and what it logs is read
	// from there on.
	from int64
	// exited is closed once the process has exited and its log is closed.
	exited chan struct{}
}

// logTailBytes is how much of a process's log a failure shows.
const logTailBytes = 4000

// stopGrace is how long StartT's cleanup waits after SIGTERM.
const stopGrace = 10 * time.Second

// Start starts c. The caller stops the process; tests use StartT.
func Start(c Command) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(c.Log), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(c.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	from, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		logf.Close()
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
	p := &Process{Name: c.Name, Log: c.Log, cmd: cmd, from: from, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // a killed process exits with an error, as expected
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// StartT starts c for the test t: stopped (SIGTERM, then SIGKILL) when the
// test ends, with the tail of its log in the test's output if the test
// failed.
func StartT(t testing.TB, c Command) *Process {
	t.Helper()
	if c.Log == "" {
		c.Log = filepath.Join(t.TempDir(), c.Name+".log")
	}
	p, err := Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(stopGrace)
		if t.Failed() {
			t.Logf("%s log (%s):\n%s", p.Name, p.Log, p.LogTail(logTailBytes))
		}
	})
	return p
}

// Ready polls cond (Dialable, HTTPOK, or the test's own) until it holds.
// It gives up at once if the process exits, and its error then carries the
// tail of the log, where the reason is (AddrInUse finds a taken port in
// it).
func (p *Process) Ready(within time.Duration, what string, cond func() (bool, error)) error {
	err := poll(within, p.Name+" "+what, cond, p.exited)
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w\n%s log (%s):\n%s", err, p.Name, p.Log, p.LogTail(logTailBytes))
}

// WaitLog waits until a line of the log matches re, and returns the
// match's submatches: a server started on port 0 says in its log which
// port it got.
func (p *Process) WaitLog(within time.Duration, re *regexp.Regexp) ([]string, error) {
	var m []string
	err := p.Ready(within, "to log "+re.String(), func() (bool, error) {
		b, err := p.output()
		if err != nil {
			return false, err
		}
		m = re.FindStringSubmatch(string(b))
		return m != nil, nil
	})
	return m, err
}

// LoggedAddr waits for the process to log the message msg with
// key=host:port, and returns the address: a Rosetta binary listens on
// port 0 and logs the address it got. It reads log/slog's JSON and text
// forms.
func (p *Process) LoggedAddr(within time.Duration, msg, key string) (string, error) {
	var addr string
	err := p.Ready(within, fmt.Sprintf("to log %q with %s=host:port", msg, key), func() (bool, error) {
		b, err := p.output()
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if a, ok := loggedAddr(line, msg, key); ok {
				addr = a
				return true, nil
			}
		}
		return false, nil
	})
	return addr, err
}

// loggedAddr finds key's address in a log line with the message msg.
func loggedAddr(line, msg, key string) (string, bool) {
	var a string
	var rec map[string]any
	if json.Unmarshal([]byte(line), &rec) == nil {
		if rec["msg"] != msg {
			return "", false
		}
		a, _ = rec[key].(string)
	} else {
		re := regexp.MustCompile(`msg="?` + regexp.QuoteMeta(msg) + `"? (?:.* )?` + regexp.QuoteMeta(key) + `=(\S+)`)
		m := re.FindStringSubmatch(line)
		if m == nil {
			return "", false
		}
		a = m[1]
	}
	_, port, err := net.SplitHostPort(a)
	return a, err == nil && port != "" && port != "0"
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

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// ExitErr waits for the process to exit and returns how it ended (nil for
// a clean exit).
func (p *Process) ExitErr() error {
	<-p.exited
	if p.cmd.ProcessState.Success() {
		return nil
	}
	return errors.New(p.cmd.ProcessState.String())
}

// output returns what this process wrote to its log.
func (p *Process) output() ([]byte, error) {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return nil, err
	}
	return b[min(p.from, int64(len(b))):], nil
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
