package main

import (
	"bytes"
	"strings"
	"testing"
)

const thriftDemoFile = "../../examples/thrift/demo.yaml"

// TestDemoThrift: the demo's Thrift part sends every ping to echo-a, splits
// echo about 50/50 across echo-a and echo-b, answers a method no route
// matches with the proxy's own UNKNOWN_METHOD exception and passes a
// server's declared exception through.
func TestDemoThrift(t *testing.T) {
	out := mustRun(t, "demo", "--calls", "300")
	if !strings.Contains(out, "Rosetta demo, Thrift:") || !strings.Contains(out, "(framed binary)") {
		t.Fatalf("no Thrift part in:\n%s", out)
	}
	// METHOD ROUTE CONFIGURED echo-a echo-b ERRORS
	ping := row(t, out, "ping")
	if ping[1] != "ping" || ping[2] != "echo-a" || count(t, ping[3]) != 300 || count(t, ping[4]) != 0 || ping[5] != "0" {
		t.Errorf("ping row %q, want all 300 on echo-a", ping)
	}
	echo := row(t, out, "echo")
	a, b := count(t, echo[3]), count(t, echo[4])
	// 50% of 300 is 150 with a standard deviation of about 9.
	if echo[1] != "echo" || echo[2] != "echo-a 50% / echo-b 50%" || a+b != 300 || a < 100 || a > 200 || echo[5] != "0" {
		t.Errorf("echo row %q, want about 150/150", echo)
	}
	for _, want := range []string{
		`Echo.ping("rosetta") -> "echo-a: pong rosetta"`,
		`Echo.hello  (route: (none), so the proxy answers itself)`,
		`TApplicationException UNKNOWN_METHOD: "rosetta: no route matched the request"`,
		`declared exception Oops from the server: "echo-`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestThriftDemoConfigCopy: the built-in copy is examples/thrift/demo.yaml,
// which passes validate.
func TestThriftDemoConfigCopy(t *testing.T) {
	if !bytes.Equal(thriftDemoConfig, []byte(readFile(t, thriftDemoFile))) {
		t.Fatalf("cmd/rosettactl/thrift_demo.yaml differs from %s: cp %[1]s cmd/rosettactl/thrift_demo.yaml", thriftDemoFile)
	}
	out := mustRun(t, "validate", thriftDemoFile)
	if !strings.Contains(out, ": ok (1 listener, 1 route configuration, 2 clusters, 0 endpoint sets)") {
		t.Errorf("got:\n%s", out)
	}
}

// TestDemoThriftConfigFlag: the Thrift part runs another config, in the
// format its codec options pin (here compact), with servers named after
// its clusters; it refuses a config whose listener is not Thrift.
func TestDemoThriftConfigFlag(t *testing.T) {
	cfg := strings.NewReplacer(
		"echo-a", "blue", "echo-b", "green",
		"protocol: binary", "protocol: compact",
		"weight: 50}", "weight: 0}",
	).Replace(readFile(t, thriftDemoFile))
	cfg = strings.Replace(cfg, "{name: green, weight: 0}", "{name: green, weight: 1}", 1)
	out := mustRun(t, "demo", "--thrift-config", writeFile(t, cfg), "--calls", "20", "--concurrency", "2")
	if e := row(t, out, "echo"); count(t, e[4]) != 20 || !strings.Contains(out, "(framed compact)") || !strings.Contains(out, "green on 127.0.0.1:") {
		t.Errorf("custom config: %q\n%s", e, out)
	}
	if _, err := run(t, "demo", "--thrift-config", demoFile, "--calls", "5"); err == nil || !strings.Contains(err.Error(), `uses codec "dubbo"`) {
		t.Errorf("a Dubbo config as the Thrift part: got %v", err)
	}
}
