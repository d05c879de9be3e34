package k8s

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
)

// The API server e2e shares one cluster (it takes seconds to start) and
// the controller and proxy binaries; TestMain sets them up and tears them
// down.
var (
	env      kubeenv.Env
	ctrlBin  string
	proxyBin string
	proxyErr error
)

func TestMain(m *testing.M) {
	os.Exit(env.Main(m, kubeenv.Options{RepoRoot: repoRoot, Name: "API server e2e", Setup: setup}))
}

// needCluster fails (CI=true) or skips the test when the cluster is not there.
func needCluster(t *testing.T) *kubeenv.Cluster {
	t.Helper()
	return env.Need(t)
}

// setup installs Istio's and Rosetta's CRDs and the rendered manifests, and
// builds the controller.
func setup(c *kubeenv.Cluster) error {
	// The Istio CRDs ship in the istio.io/api module this module requires.
	istioCRDs, err := kubeenv.IstioCRDs("")
	if err != nil {
		return err
	}
	if err := c.ApplyServerSide(istioCRDs); err != nil {
		return err
	}
	if err := c.InstallRosetta(repoRoot); err != nil {
		return err
	}
	ctrlBin = filepath.Join(c.Dir, "rosetta-controller")
	if err := kubeenv.GoBuild(repoRoot, ctrlBin, "./cmd/rosetta-controller"); err != nil {
		return err
	}
	// Only the traffic tests need the proxy.
	proxyBin = filepath.Join(c.Dir, "rosetta-proxy")
	proxyErr = kubeenv.GoBuild(repoRoot, proxyBin, "./cmd/rosetta-proxy")
	return nil
}
