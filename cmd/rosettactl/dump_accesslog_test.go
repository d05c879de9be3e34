package main

import (
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// dump shows a listener's access log config.
func TestDumpShowsAccessLog(t *testing.T) {
	cfg := strings.Replace(readFile(t, demoFile), "port_value: 20880", "port_value: 0", 1)
	cfg = strings.Replace(cfg, "route_config_name: greeter-routes", "route_config_name: greeter-routes\n        access_log: {format: JSON, path: stderr, sample_percent: 5}", 1)
	px := proxytest.Start(t, cfg)
	out := mustRun(t, "dump", "--admin", px.AdminAddr, "-o", "json")
	if !strings.Contains(out, `"accessLog"`) || !strings.Contains(out, `"samplePercent": 5`) {
		t.Errorf("dump lacks the access log:\n%s", out)
	}
}
