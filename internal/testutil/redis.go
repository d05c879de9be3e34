package testutil

import (
	"bufio"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// redisWait bounds a redis-server's start.
const redisWait = 10 * time.Second

// RedisServer starts Debian's redis-server on a loopback port with extra
// arguments (such as "--requirepass", "pw") and returns its address; it is
// stopped when the test ends. A machine without redis-server fails the
// test: a test that needs a real server does not pass without one.
// protocols/redis has a fuller harness (clusters, replicas); this is for
// tests elsewhere that need one server.
func RedisServer(t testing.TB, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server: %v (install Debian's redis-server)", err)
	}
	// redis-server takes its port on the command line ("--port 0" turns
	// TCP off), so it starts on ports picked for it.
	return OnFreePorts(t, 1, func(ports []int) (string, error) {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		dir := t.TempDir()
		p := StartT(t, Command{Name: "redis-server " + addr, Path: bin, Log: dir + "/log", Args: append([]string{
			"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "no"}, extra...)})
		return addr, p.Ready(redisWait, "to answer PING", RedisAnswers(addr))
	})
}

// RedisAnswers is ready once a server at addr answers PING (with PONG, or
// with NOAUTH when it wants a password).
func RedisAnswers(addr string) func() (bool, error) {
	return func() (bool, error) {
		c, err := net.DialTimeout("tcp", addr, readyTimeout)
		if err != nil {
			return false, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(readyTimeout))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return false, err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return false, err
		}
		return strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH"), nil
	}
}
