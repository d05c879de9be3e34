// Package istio is Rosetta's e2e in an Istio mesh: a real istiod
// (pilot-discovery, built by hack/build-istiod.sh) next to a real
// kube-apiserver and etcd (hack/build-k8s-tools.sh), no containers and no
// Envoy. See README.md.
package istio

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
)

var repoRoot = filepath.Join("..", "..")

// The tests share one cluster and one istiod; TestMain starts them.
var (
	env  kubeenv.Env
	mesh *istiod
)

// testNamespaces are created before istiod starts; istiod writes the mesh
// root certificate into each.
var testNamespaces = []string{"demo"}

func TestMain(m *testing.M) {
	os.Exit(env.Main(m, kubeenv.Options{RepoRoot: repoRoot, Name: "Istio e2e", Setup: setup}))
}

// setup installs the CRDs of the istio.io/api version istiod was built
// with, the standard Gateway API CRDs of its sigs.k8s.io/gateway-api
// version (ambient waypoints are Gateways), and Rosetta's, creates the namespaces and starts istiod.
func setup(c *kubeenv.Cluster) error {
	bin, err := istiodBinary()
	if err != nil {
		return err
	}
	api, err := istioAPIVersion(bin)
	if err != nil {
		return err
	}
	crds, err := kubeenv.IstioCRDs(api)
	if err != nil {
		return err
	}
	gwCRDs, err := gatewayAPICRDs(bin)
	if err != nil {
		return err
	}
	if err := c.ApplyServerSide(crds, gwCRDs); err != nil {
		return err
	}
	if err := c.InstallRosetta(repoRoot); err != nil {
		return err
	}
	for _, ns := range append([]string{"istio-system"}, testNamespaces...) {
		if err := c.EnsureNamespace(ns); err != nil {
			return err
		}
	}
	mesh, err = startIstiod(c, bin, testNamespaces[0])
	return err
}

// needMesh returns the cluster and istiod; when they are not there the
// test fails under CI=true and skips otherwise.
func needMesh(t *testing.T) (*kubeenv.Cluster, *istiod) {
	t.Helper()
	return env.Need(t), mesh
}

// Rosetta's binaries, built from the main module on first use.
var (
	buildOnce         sync.Once
	ctrlBin, proxyBin string
	buildErr          error
)

// rosettaBinaries builds rosetta-controller and rosetta-proxy once per test
// binary and returns their paths.
func rosettaBinaries(t *testing.T, c *kubeenv.Cluster) (controller, proxy string) {
	t.Helper()
	buildOnce.Do(func() {
		ctrlBin = filepath.Join(c.Dir, "rosetta-controller")
		proxyBin = filepath.Join(c.Dir, "rosetta-proxy")
		if buildErr = kubeenv.GoBuild(repoRoot, ctrlBin, "./cmd/rosetta-controller"); buildErr == nil {
			buildErr = kubeenv.GoBuild(repoRoot, proxyBin, "./cmd/rosetta-proxy")
		}
	})
	if buildErr != nil {
		t.Fatal(fmt.Errorf("rosetta binaries: %w", buildErr))
	}
	return ctrlBin, proxyBin
}
