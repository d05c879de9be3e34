package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

const demoFile = "../../examples/dubbo/demo.yaml"

// run executes rosettactl in-process with args and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("rosettactl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// row returns the table row that starts with first, split on runs of spaces.
func row(t *testing.T, out, first string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
		if len(f) > 0 && f[0] == first {
			return f
		}
	}
	t.Fatalf("no row %q in:\n%s", first, out)
	return nil
}

func count(t *testing.T, cell string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.Fields(cell)[0])
	if err != nil {
		t.Fatalf("cell %q: %v", cell, err)
	}
	return n
}

// TestDemo: the demo routes sayHello to v2 only, splits sayGoodbye about
// 80/20, sends other Greeter methods to v1, and shows a status 60 no-route
// reply and a provider exception.
func TestDemo(t *testing.T) {
	out := mustRun(t, "demo", "--calls", "300")
	// METHOD ROUTE CONFIGURED greeter-v1 greeter-v2 ERRORS
	hello := row(t, out, "sayHello")
	if hello[1] != "say-hello" || count(t, hello[3]) != 0 || count(t, hello[4]) != 300 || hello[5] != "0" {
		t.Errorf("sayHello row %q, want all 300 on greeter-v2", hello)
	}
	bye := row(t, out, "sayGoodbye")
	v1, v2 := count(t, bye[3]), count(t, bye[4])
	// 80% of 300 is 240 with a standard deviation of about 7.
	if bye[2] != "greeter-v1 80% / greeter-v2 20%" || v1+v2 != 300 || v1 < 200 || v1 > 280 {
		t.Errorf("sayGoodbye row %q, want about 240/60", bye)
	}
	other := row(t, out, "howAreYou")
	if other[1] != "greeter-default" || count(t, other[3]) != 300 || count(t, other[4]) != 0 {
		t.Errorf("howAreYou row %q, want all 300 on greeter-v1", other)
	}
	for _, want := range []string{
		`sayHello("rosetta") -> "Hello, rosetta! (greeter-v2)"`,
		"Dubbo status 60 (service not found)",
		`service exception from the provider: "greeter-v1: fail always throws"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestDemoConfigFlag: the demo runs any single-listener Dubbo config, with
// providers named after its clusters, and refuses one it cannot run.
func TestDemoConfigFlag(t *testing.T) {
	cfg := strings.NewReplacer("greeter-v1", "blue", "greeter-v2", "green").Replace(readFile(t, demoFile))
	out := mustRun(t, "demo", "--config", writeFile(t, cfg), "--calls", "20", "--concurrency", "2")
	if h := row(t, out, "sayHello"); count(t, h[4]) != 20 || !strings.Contains(out, "green on 127.0.0.1:") {
		t.Errorf("custom config: %q\n%s", h, out)
	}
	bad := strings.Replace(readFile(t, demoFile), "codec: dubbo", "codec: nope", 1)
	if _, err := run(t, "demo", "--config", writeFile(t, bad)); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown codec: got %v", err)
	}
	if _, err := run(t, "demo", "--config", "/no/such/file.yaml"); err == nil {
		t.Error("a missing config file did not fail")
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestValidate: good files pass; each kind of mistake fails naming the
// field; a route to an undefined cluster is a warning.
func TestValidate(t *testing.T) {
	out := mustRun(t, "validate", demoFile, "../../examples/dubbo/proxy.yaml")
	if strings.Count(out, ": ok (1 listener, 1 route configuration, 2 clusters, 0 endpoint sets)") != 2 {
		t.Errorf("got:\n%s", out)
	}
	demo := readFile(t, demoFile)
	for _, tc := range []struct {
		name  string
		edits []string // old, new, old, new ...
		want  string
	}{
		{"unknown codec", []string{"codec: dubbo", "codec: nope"}, `codec: "nope" is not a codec`},
		{"missing routes", []string{"route_config_name: greeter-routes", "route_config_name: other"}, `no route configuration named "other"`},
		{"bad regex", []string{"{name: method, exact: sayHello}", "{name: method, regex: '('}"}, "regex"},
		{"zero weights", []string{"weight: 80}", "weight: 0}", "weight: 20}", "weight: 0}"}, "weights sum to 0"},
		{"unknown field", []string{"connect_timeout: 1s", "connect_timeot: 1s"}, "connect_timeot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, "validate", writeFile(t, strings.NewReplacer(tc.edits...).Replace(demo)))
			if err == nil || !strings.Contains(out, "invalid") || !strings.Contains(out, tc.want) {
				t.Fatalf("got %v, output:\n%s\nwant it to name %q", err, out, tc.want)
			}
		})
	}
	cfg := strings.Replace(demo, "cluster: greeter-v2", "cluster: greeter-v3", 1)
	out = mustRun(t, "validate", writeFile(t, cfg))
	if !strings.Contains(out, `warning: route "say-hello" of "greeter-routes" sends to cluster "greeter-v3", which is not defined`) {
		t.Errorf("no warning for an undefined cluster:\n%s", out)
	}
	if _, err := run(t, "validate"); err == nil {
		t.Error("validate without a file did not fail")
	}
}

// TestExplainFile: explain (and its other name, route) answers from a
// proxy config file as the proxy routes, with why each earlier route did
// not match, as a table and as JSON.
func TestExplainFile(t *testing.T) {
	for _, tc := range []struct {
		attrs []string
		want  []string
	}{
		{[]string{"interface=org.example.Greeter", "method=sayHello"}, []string{"say-hello (routes[0])  matched", `route "say-hello"`,
			"greeter-v2  100%   ROUND_ROBIN  127.0.0.1:20882", "timeout 3s"}},
		{[]string{"interface=org.example.Greeter", "method=sayGoodbye"}, []string{
			`say-hello (routes[0])    no match: method exact "sayHello" (the request has "sayGoodbye")`, `route "say-goodbye"`,
			"greeter-v1  80%    ROUND_ROBIN", "greeter-v2  20%    ROUND_ROBIN"}},
		{[]string{"interface=org.example.Greeter", "method=other", "version=1.0.0"}, []string{`route "greeter-default"`, "greeter-v1  100%"}},
		{[]string{"method=sayHello"}, []string{"no match: interface exact \"org.example.Greeter\" (the request has none)", "no route"}},
	} {
		for _, cmd := range []string{"explain", "route"} {
			args := []string{cmd, demoFile, "--listener", "dubbo"}
			for _, a := range tc.attrs {
				args = append(args, "--attr", a)
			}
			out := mustRun(t, args...)
			if !strings.HasPrefix(out, `listener "dubbo" (codec dubbo), route configuration "greeter-routes"`) {
				t.Errorf("%v: got:\n%s", tc.attrs, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("%s %v: output lacks %q:\n%s", cmd, tc.attrs, w, out)
				}
			}
		}
	}
	out := mustRun(t, "explain", demoFile, "-o", "json", "--attr", "interface=org.example.Greeter", "--attr", "method=sayGoodbye")
	var e proxy.Explanation
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if e.Route != "say-goodbye" || len(e.Routes) != 2 || e.Routes[0].Condition != `method exact "sayHello"` || e.Routes[0].Got != "sayGoodbye" ||
		len(e.Clusters) != 2 || e.Clusters[0].Percent != 80 || e.Clusters[1].Endpoint != "127.0.0.1:20882" {
		t.Errorf("json: %+v", e)
	}
	if out := mustRun(t, "explain", demoFile, "-o", "yaml", "--attr", "method=x"); !strings.Contains(out, "listener: dubbo\n") {
		t.Errorf("yaml:\n%s", out)
	}
	for _, args := range [][]string{
		{"explain", demoFile, "--listener", "nope", "--attr", "method=x"},
		{"explain", demoFile, "--attr", "novalue"},
		{"explain", "/no/such/file.yaml"},
		{"explain", demoFile, "-o", "xml"},
	} {
		if out, err := run(t, args...); err == nil {
			t.Errorf("%v did not fail:\n%s", args, out)
		}
	}
}

// TestDump: dump prints the config a running proxy holds, and fails
// clearly when no proxy answers.
func TestDump(t *testing.T) {
	cfg := strings.Replace(readFile(t, demoFile), "port_value: 20880", "port_value: 0", 1)
	px := proxytest.Start(t, cfg)
	out := mustRun(t, "dump", "--admin", px.AdminAddr, "-o", "json")
	for _, want := range []string{`"listeners"`, `"greeter-routes"`, `"say-goodbye"`, `"greeter-v2"`} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %s:\n%s", want, out)
		}
	}
	out = mustRun(t, "dump", "--admin", px.AdminAddr)
	for _, want := range []string{"listener  dubbo ", "codec dubbo, routes greeter-routes", "routes    greeter-routes  say-hello, say-goodbye, greeter-default",
		"cluster   greeter-v2      static, ROUND_ROBIN"} {
		if !strings.Contains(out, want) {
			t.Errorf("dump's table lacks %q:\n%s", want, out)
		}
	}
	if out := mustRun(t, "dump", "--admin", px.AdminAddr, "-o", "yaml"); !strings.Contains(out, "listeners:\n") {
		t.Errorf("dump -o yaml:\n%s", out)
	}
	if _, err := run(t, "dump", "--admin", fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), "--timeout", "2s"); err == nil {
		t.Error("dump of an address nobody serves did not fail")
	}
}
