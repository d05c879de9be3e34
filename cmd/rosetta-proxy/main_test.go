package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// The shipped example config runs in the real binary: sayHello goes to the
// first provider, everything else to the second, and SIGTERM lets a call in
// flight finish before the process exits cleanly.
func TestBinaryServesTheExampleConfigAndDrainsOnSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "rosetta-proxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	release := make(chan struct{})
	serve := func(name string) *dubbopeer.Provider {
		p, err := dubbopeer.Serve("127.0.0.1:0", name, func(ctx context.Context, r *dubbopeer.Request) (any, error) {
			if r.Method == "slow" {
				<-release
			}
			return name, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	hello, other := serve("hello"), serve("other")
	// A test that fails before close(release) below must still free the
	// slow handler, or the providers' Close waits for it forever.
	var releaseOnce sync.Once
	releaseSlow := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseSlow)
	listen, admin := freePort(t), freePort(t)
	example, err := os.ReadFile("../../examples/dubbo/proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("20880", listen, "20881", port(hello.Addr()), "20882", port(other.Addr()), "15000", admin).Replace(string(example))
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitReady(t, "http://127.0.0.1:"+admin+"/ready")

	c, err := dubbopeer.Dial("127.0.0.1:" + listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	svc := dubbopeer.Service{Interface: "org.example.Greeter"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for method, want := range map[string]string{"sayHello": "hello", "sayBye": "other"} {
		got, _, err := c.Call(ctx, svc, method, []any{"x"}, nil)
		if err != nil || got != want {
			t.Fatalf("%s: %v %v, want %s", method, got, err, want)
		}
	}
	slow := make(chan error, 1)
	go func() {
		_, _, err := c.Call(ctx, svc, "slow", nil, nil)
		slow <- err
	}()
	// SIGTERM must find the slow call in flight: sayBye and slow both
	// reached the second provider.
	testutil.Eventually(t, 5*time.Second, "the slow call to reach the provider", func() bool { return other.Calls() >= 2 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	releaseSlow()
	if err := <-slow; err != nil {
		t.Fatalf("the call in flight at SIGTERM: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the proxy did not exit after SIGTERM")
	}
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}

func TestFlags(t *testing.T) {
	if err := run(options{logLevel: "info"}); err == nil || !strings.Contains(err.Error(), "exactly one of --config") {
		t.Fatalf("no config source: %v", err)
	}
	if _, err := parseLabels("app=a,bad"); err == nil || !strings.Contains(err.Error(), `"bad" is not key=value`) {
		t.Fatalf("bad labels: %v", err)
	}
	if err := run(options{logLevel: "loud", configFile: "x"}); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("bad log level: %v", err)
	}
	if err := run(options{logLevel: "info", configFile: "x", hboneAddress: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "--hbone-address needs --identity") {
		t.Fatalf("HBONE without an identity: %v", err)
	}
}
