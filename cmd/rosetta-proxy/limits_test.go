package main

import (
	"io"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/spf13/pflag"
)

func TestLimitFlagsParseTheChartsValues(t *testing.T) {
	fs := pflag.NewFlagSet("rosetta-proxy", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var l proxy.Limits
	registerLimits(fs, &l)
	if l != proxy.DefaultLimits() {
		t.Fatalf("without flags: %+v, want the defaults %+v", l, proxy.DefaultLimits())
	}
	// As manifests/charts/rosetta/values.yaml passes them.
	err := fs.Parse([]string{"--buffer-budget=64Mi", "--per-connection-buffer-limit=4Mi", "--frame-timeout=10s",
		"--idle-timeout=1h", "--max-connections=100"})
	if err != nil {
		t.Fatal(err)
	}
	want := proxy.Limits{BufferBudget: 64 << 20, PerConnectionBuffer: 4 << 20, FrameTimeout: 10 * time.Second,
		IdleTimeout: time.Hour, MaxConnections: 100}
	if l != want {
		t.Fatalf("parsed %+v, want %+v", l, want)
	}
	for _, bad := range []string{"--buffer-budget=lots", "--per-connection-buffer-limit=0", "--buffer-budget=-1"} {
		if err := fs.Parse([]string{bad}); err == nil {
			t.Errorf("%s was accepted", bad)
		}
	}
}
