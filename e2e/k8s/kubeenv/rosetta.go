package kubeenv

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// IstioCRDs returns the file of Istio's CRDs shipped in the istio.io/api
// module at version, or at the version the calling module requires when
// version is empty.
func IstioCRDs(version string) (string, error) {
	mod := "istio.io/api"
	if version != "" {
		mod += "@" + version
	}
	js, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	if err != nil {
		return "", fmt.Errorf("find %s: %w: %s", mod, err, js)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(js, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("find %s: %v: %s", mod, err, js)
	}
	return filepath.Join(m.Dir, "kubernetes", "customresourcedefinitions.gen.yaml"), nil
}

// InstallRosetta applies Rosetta's CRDs (crds/) and the rendered chart
// (manifests/rendered/rosetta.yaml: the rosetta-system namespace, the
// controller's ServiceAccount and RBAC) from the main module in repoRoot.
func (c *Cluster) InstallRosetta(repoRoot string) error {
	if err := c.ApplyServerSide(filepath.Join(repoRoot, "crds")); err != nil {
		return err
	}
	manifest := filepath.Join(repoRoot, "manifests", "rendered", "rosetta.yaml")
	if out, err := c.Kubectl("", "apply", "-f", manifest); err != nil {
		return fmt.Errorf("kubectl apply -f %s: %w\n%s", manifest, err, out)
	}
	return nil
}

// GoBuild builds pkg of the main module in repoRoot into bin.
func GoBuild(repoRoot, bin, pkg string) error {
	return testutil.Build(repoRoot, bin, pkg) // the main module's own go.sum
}

// Controller is rosetta-controller running as a process. Kill ends it as
// a crash would: its leader Lease stays held until it expires (15 s), so a
// successor writes no status until then; Stop (SIGTERM) lets it give the
// Lease back.
type Controller struct {
	*testutil.Process
	// HTTPAddr serves /readyz and /metrics; DebugAddr /debug/config_dump.
	XDSAddr, HTTPAddr, DebugAddr string
}

// StartController runs bin (rosetta-controller) with a token of the
// chart's ServiceAccount (rosetta-system/rosetta-controller), so that a
// missing RBAC rule fails the test, and waits until it is ready. Empty
// addresses mean port 0, and the controller logs the ports it got; a
// restarted controller passes its predecessor's. The debug server takes a
// new port on each start. args are added to its command line. It stops
// when t ends.
func (c *Cluster) StartController(t testing.TB, bin, xdsAddr, httpAddr string, args ...string) *Controller {
	t.Helper()
	kc := filepath.Join(c.Dir, "controller.kubeconfig")
	if err := WriteKubeconfig(kc, c.URL, c.Token(t, "rosetta-system", "rosetta-controller", 2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if xdsAddr == "" {
		xdsAddr, httpAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	p := testutil.StartT(t, testutil.Command{Name: "controller", Path: bin, Log: filepath.Join(c.Dir, "controller.log"),
		Args: append([]string{"--kubeconfig=" + kc, "--xds-address=" + xdsAddr, "--http-address=" + httpAddr, "--debug-address=127.0.0.1:0",
			"--leader-election-namespace=rosetta-system", "--log-level=debug"}, args...)})
	ctrl := &Controller{Process: p}
	for key, addr := range map[string]*string{"xds": &ctrl.XDSAddr, "http": &ctrl.HTTPAddr, "debug": &ctrl.DebugAddr} {
		var err error
		if *addr, err = p.LoggedAddr(startWait, "serving", key); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Ready(startWait, "ready", testutil.HTTPOK("http://"+ctrl.HTTPAddr+"/readyz")); err != nil {
		t.Fatal(err)
	}
	return ctrl
}

// startWait bounds a controller's or proxy's start.
const startWait = 30 * time.Second

// StartProxy runs bin (rosetta-proxy) as xDS node id in namespace ns,
// taking its config from the controller at xdsAddr, and returns its admin
// address. args are added to its command line. It stops when t ends.
func (c *Cluster) StartProxy(t testing.TB, bin, xdsAddr, id, ns string, args ...string) (admin string) {
	t.Helper()
	return c.RunProxy(t, bin, xdsAddr, id, ns, args...).Admin
}

// Proxy is rosetta-proxy running as a process; Admin serves /metrics and
// /config_dump.
type Proxy struct {
	*testutil.Process
	Admin string
}

// RunProxy is StartProxy for a test that also signals the process (Stop
// drains it with SIGTERM). Later args win over the defaults.
func (c *Cluster) RunProxy(t testing.TB, bin, xdsAddr, id, ns string, args ...string) *Proxy {
	t.Helper()
	p := testutil.StartT(t, testutil.Command{Name: "proxy " + id, Path: bin, Log: filepath.Join(c.Dir, strings.ReplaceAll(id, "/", "_")+".log"),
		Args: append([]string{"--xds=" + xdsAddr, "--node-id=" + id, "--namespace=" + ns,
			"--admin=127.0.0.1:0", "--drain-timeout=1s"}, args...)})
	// The admin server listens on port 0; the proxy logs the port it got.
	admin, err := p.LoggedAddr(startWait, "rosetta-proxy started", "admin")
	if err != nil {
		t.Fatal(err)
	}
	return &Proxy{Process: p, Admin: admin}
}
