package dubbo_test

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	_ "github.com/rosetta-mesh/rosetta/protocols/standard"
)

// TestConfigsValid: every config in this folder loads and passes the
// proxy's own checks.
func TestConfigsValid(t *testing.T) {
	for _, f := range []string{"proxy.yaml", "demo.yaml"} {
		boot, err := config.LoadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := proxy.Validate(boot.Resources); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
