package testutil

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisServer starts Debian's redis-server on a free loopback port with
// extra arguments (such as "--requirepass", "pw") and returns its address;
// it is killed when the test ends. A machine without redis-server fails
// the test: a test that needs a real server does not pass without one.
// protocols/redis has a fuller harness (clusters, replicas); this is for
// tests elsewhere that need one server.
func RedisServer(t testing.TB, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server: %v (install Debian's redis-server)", err)
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no"}, extra...)
	logPath := filepath.Join(dir, "log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited; out.Close() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for !redisAnswers(addr) {
		select {
		case <-exited:
		default:
			if time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond) // polling for readiness, bounded by the deadline
				continue
			}
		}
		log, _ := os.ReadFile(logPath)
		t.Fatalf("redis-server on %s did not answer PING:\n%s", addr, log)
	}
	return addr
}

// redisAnswers reports whether a server answers PING (with PONG, or with
// NOAUTH when it wants a password).
func redisAnswers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH"))
}
