package thrift_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// needTool returns the path of a tool the test needs. Missing, it fails the
// test under CI=true and skips it elsewhere.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	return testutil.NeedTool(t, name, "apt-get install -y "+pkg)
}

// TestInteropPython: Debian's python3-thrift, a Thrift implementation
// independent of the Go library, calls the Go servers through the proxy. Its
// oneway calls are ONEWAY messages.
func TestInteropPython(t *testing.T) {
	compiler := needTool(t, "thrift", "thrift-compiler")
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import thrift").Run(); err != nil {
		testutil.Unavailable(t, python+" with thrift (apt-get install -y python3-thrift)", err)
	}
	gen := t.TempDir()
	if out, err := exec.Command(compiler, "--gen", "py", "-out", gen, "testdata/echo.thrift").CombinedOutput(); err != nil {
		t.Fatalf("thrift --gen py: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		mode string
		peer peer
	}{
		{"framed-binary", peer{transport: "framed"}},
		{"buffered-compact", peer{transport: "unframed", compact: true}},
		{"header-compact", peer{transport: "header", compact: true}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			_, portA := serve(t, tc.peer, "a")
			b, portB := serve(t, tc.peer, "b")
			extra := ""
			if tc.peer.transport == "header" {
				extra = canaryRoute
			}
			px := proxytestStart(t, fmt.Sprintf(proxyConfig, extra, portA, portB))
			host, port, err := net.SplitHostPort(px)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, "testdata/py_client.py", host, port, tc.mode)
			cmd.Env = append(os.Environ(), "PYTHONPATH="+gen)
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Fatalf("python client: %v\n%s", err, out)
			}
			testutil.Eventually(t, 5*time.Second, "the python oneway call to reach server b", func() bool { return b.fired.Load() > 0 })
		})
	}
}
