package testutil

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

// GoBuild builds pkg (a path such as "./cmd/rosettactl") of the module in
// root into the test's temporary folder and returns the binary, named as
// pkg's last element. Tests that run a binary as users do (flags, exit
// codes, signals) build it this way; root is the main module's folder, so
// the build uses its go.mod and go.sum even from an e2e module.
func GoBuild(t testing.TB, root, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if err := Build(root, bin, pkg); err != nil {
		t.Fatal(err)
	}
	return bin
}

// Build is GoBuild into bin, for code without a test at hand (TestMain, a
// binary built once for many tests).
func Build(root, bin, pkg string) error {
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return nil
}
