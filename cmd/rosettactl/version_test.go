package main

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// TestVersionFlag: the built binary's --version prints the module version
// and VCS stamp from its build info.
func TestVersionFlag(t *testing.T) {
	testutil.CheckVersionFlag(t, ".", "rosettactl")
}
