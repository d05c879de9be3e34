package auto_test

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	_ "github.com/rosetta-mesh/rosetta/protocols/standard"
)

// TestConfigValid: proxy.yaml loads and passes the proxy's own checks.
func TestConfigValid(t *testing.T) {
	boot, err := config.LoadFile("proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := proxy.Validate(boot.Resources); err != nil {
		t.Error(err)
	}
}
