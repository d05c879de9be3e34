package controller_test

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
	// The built-in protocols' translators, which the golden files and the
	// package's other tests (in-package ones too: one test binary) use.
	_ "github.com/rosetta-mesh/rosetta/protocols/standard/control"
)

// goldenOptions are the options the golden files are built with: a
// resolver that answers for the names they use.
var goldenOptions = controller.Options{Resolve: controller.FakeResolver}

// TestGolden translates each testdata/golden/*.yaml and compares every
// proxy's resources and every status with the matching .json file (see
// controllertest.Golden); go test -run TestGolden -update rewrites them.
func TestGolden(t *testing.T) {
	controllertest.Golden(t, "testdata/golden/*.yaml", goldenOptions)
}

// TestGoldenLazy is TestGolden for lazy proxies, built with a fallback
// that names a Kubernetes Service (testdata/golden-lazy).
func TestGoldenLazy(t *testing.T) {
	opts := goldenOptions
	opts.LazyFallback = "rosetta-fallback.rosetta-system.svc.cluster.local"
	controllertest.Golden(t, "testdata/golden-lazy/*.yaml", opts)
}
