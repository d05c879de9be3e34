package k8s

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The API server e2e shares one cluster (it takes seconds to start) and
// one controller binary; TestMain sets them up and tears them down.
var (
	env      *cluster
	envErr   error
	ctrlBin  string
	proxyBin string
	proxyErr error
	workDir  string
)

func TestMain(m *testing.M) {
	code := func() int {
		tools, err := toolsDir()
		if err != nil {
			envErr = err
			return m.Run()
		}
		workDir, err = os.MkdirTemp("", "rosetta-e2e-k8s-")
		if err != nil {
			envErr = err
			return m.Run()
		}
		defer os.RemoveAll(workDir)
		env, envErr = startCluster(tools, workDir)
		if envErr == nil {
			defer env.stop()
			envErr = setup(env)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// needCluster fails (CI=true) or skips the test when the cluster is not there.
func needCluster(t *testing.T) *cluster {
	t.Helper()
	if envErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("API server e2e cannot run: %v", envErr)
		}
		t.Skipf("API server e2e skipped: %v", envErr)
	}
	return env
}

// setup installs Istio's and Rosetta's CRDs and the rendered manifests, and
// builds the controller.
func setup(c *cluster) error {
	// The Istio CRDs ship in the istio.io/api module this module requires.
	js, err := exec.Command("go", "mod", "download", "-json", "istio.io/api").Output()
	if err != nil {
		return fmt.Errorf("find istio.io/api: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(js, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("find istio.io/api: %v %s", err, js)
	}
	istioCRDs := filepath.Join(mod.Dir, "kubernetes", "customresourcedefinitions.gen.yaml")
	steps := [][]string{
		{"apply", "--server-side", "-f", istioCRDs},
		{"apply", "--server-side", "-f", filepath.Join(repoRoot, "crds")},
		{"wait", "--for", "condition=established", "--timeout=60s", "crd", "--all"},
		{"apply", "-f", filepath.Join(repoRoot, "manifests", "rendered", "rosetta.yaml")},
	}
	for _, s := range steps {
		if out, err := c.kubectl("", s...); err != nil {
			return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(s, " "), err, out)
		}
	}
	ctrlBin = filepath.Join(c.dir, "rosetta-controller")
	if err := goBuild(ctrlBin, "./cmd/rosetta-controller"); err != nil {
		return err
	}
	// Only the traffic tests need the proxy.
	proxyBin = filepath.Join(c.dir, "rosetta-proxy")
	proxyErr = goBuild(proxyBin, "./cmd/rosetta-proxy")
	return nil
}

func goBuild(bin, pkg string) error {
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Dir = repoRoot // the main module's own go.sum
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", pkg, err, out)
	}
	return nil
}
