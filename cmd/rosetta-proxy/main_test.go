package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/cli"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// proxyWait bounds the binary's start.
const proxyWait = 20 * time.Second

// startBinary runs the built proxy (bin) with the config config(listen)
// and args, and waits until its admin server says it is ready. The admin
// server in the config listens on port 0 and the proxy logs the port it
// got; a data listener's port has to be in the config before the start,
// so testutil.OnFreePorts picks it, and picks again when another process
// took it first.
func startBinary(t *testing.T, bin string, config func(listen string) string, args ...string) (p *testutil.Process, listen, admin string) {
	t.Helper()
	dir := t.TempDir()
	return testutil.OnFreePorts(t, 1, func(ports []int) (*testutil.Process, error) {
		listen = strconv.Itoa(ports[0])
		path := filepath.Join(dir, "proxy-"+listen+".yaml")
		if err := os.WriteFile(path, []byte(config(listen)), 0o644); err != nil {
			t.Fatal(err)
		}
		p := testutil.StartT(t, testutil.Command{Name: "rosetta-proxy", Path: bin, Args: append([]string{"--config", path}, args...)})
		var err error
		if admin, err = p.LoggedAddr(proxyWait, "rosetta-proxy started", "admin"); err != nil {
			return p, err
		}
		return p, p.Ready(proxyWait, "ready", testutil.HTTPOK("http://"+admin+"/ready"))
	}), listen, admin
}

// The shipped example config runs in the real binary: sayHello goes to the
// first provider, everything else to the second, and SIGTERM lets a call in
// flight finish before the process exits cleanly.
func TestBinaryServesTheExampleConfigAndDrainsOnSIGTERM(t *testing.T) {
	bin := testutil.GoBuild(t, filepath.Join("..", ".."), "./cmd/rosetta-proxy")
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
	example, err := os.ReadFile("../../examples/dubbo/proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	px, listen, _ := startBinary(t, bin, func(listen string) string {
		return strings.NewReplacer("20880", listen, "20881", port(hello.Addr()), "20882", port(other.Addr()), "15000", "0").Replace(string(example))
	})

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
	if err := px.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	releaseSlow()
	if err := <-slow; err != nil {
		t.Fatalf("the call in flight at SIGTERM: %v", err)
	}
	select {
	case <-px.Exited():
		if err := px.ExitErr(); err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the proxy did not exit after SIGTERM")
	}
}

func TestFlags(t *testing.T) {
	if err := run(options{log: cli.Log{Level: "info"}}); err == nil || !strings.Contains(err.Error(), "exactly one of --config") {
		t.Fatalf("no config source: %v", err)
	}
	if _, err := parseLabels("app=a,bad"); err == nil || !strings.Contains(err.Error(), `"bad" is not key=value`) {
		t.Fatalf("bad labels: %v", err)
	}
	if err := run(options{log: cli.Log{Level: "loud"}, configFile: "x"}); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("bad log level: %v", err)
	}
	if err := run(options{log: cli.Log{Level: "info"}, configFile: "x", hboneAddress: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "--hbone-address needs --identity") {
		t.Fatalf("HBONE without an identity: %v", err)
	}
	for _, args := range [][]string{{}, {"--config=a", "--xds=b:1"}} {
		cmd := newCommand()
		cmd.SetArgs(args)
		cmd.SetOut(io.Discard)
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "config") || !strings.Contains(err.Error(), "xds") {
			t.Errorf("%v: %v, want an error naming --config and --xds", args, err)
		}
	}
	cmd := newCommand()
	var help strings.Builder
	cmd.SetArgs([]string{"--help"})
	cmd.SetOut(&help)
	if err := cmd.Execute(); err != nil || !strings.Contains(help.String(), "exactly one of") || !strings.Contains(help.String(), "--event-loops") {
		t.Errorf("--help: %v\n%s", err, help.String())
	}
}

func TestConcurrencyLeavesACPU(t *testing.T) {
	for _, c := range []struct {
		flag       int
		env        string
		cpus, want int
	}{
		{0, "", 1, 1},
		{0, "", 2, 1},
		{0, "", 8, 7},
		{3, "", 8, 3},
		{0, "4", 8, 0}, // GOMAXPROCS from the environment stays
		{2, "4", 8, 2},
	} {
		if got := concurrency(c.flag, c.env, c.cpus); got != c.want {
			t.Errorf("concurrency(%d, %q, %d) = %d, want %d", c.flag, c.env, c.cpus, got, c.want)
		}
	}
}
