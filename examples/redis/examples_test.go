package redis_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/redis"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	_ "github.com/rosetta-mesh/rosetta/protocols/redis"
)

// TestConfigValid: proxy.yaml and demo.yaml load and pass the proxy's own
// checks, and DemoConfig is demo.yaml.
func TestConfigValid(t *testing.T) {
	for _, f := range []string{"proxy.yaml", "demo.yaml"} {
		boot, err := config.LoadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := proxy.Validate(boot.Resources); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	b, err := os.ReadFile("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, redis.DemoConfig) {
		t.Fatal("DemoConfig is not demo.yaml")
	}
}
