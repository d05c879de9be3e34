// Command loadtest drives Dubbo echo calls directly to a provider, through
// rosetta-proxy and (when installed) through haproxy in TCP mode, in one run,
// and prints a table: throughput, latency percentiles, the proxy's CPU seconds
// per 1000 requests and its RSS. `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

type options struct {
	proxyBin string
	duration time.Duration
	rate     int
	conns    int
	payload  int
	inflight int
	profile  string
	procs    int
}

func main() {
	var o options
	flag.StringVar(&o.proxyBin, "proxy", "bin/rosetta-proxy", "the rosetta-proxy binary")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long each fixed-rate run lasts (saturation runs last half as long)")
	flag.IntVar(&o.rate, "rate", 1000, "requests per second of the fixed-rate runs")
	flag.IntVar(&o.conns, "conns", 16, "client connections")
	flag.IntVar(&o.payload, "payload", 1024, "bytes of the echoed string")
	flag.IntVar(&o.inflight, "inflight", 8, "calls in flight per connection in the saturation runs")
	flag.IntVar(&o.procs, "proxy-procs", 0, "GOMAXPROCS of rosetta-proxy (0: the Go default, one per core)")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of rosetta-proxy during its fixed-rate run to this file")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	provider, err := dubbopeer.Serve("127.0.0.1:0", "echo", func(_ context.Context, r *dubbopeer.Request) (any, error) {
		return r.Args[0], nil
	})
	if err != nil {
		return err
	}
	defer provider.Close()
	dir, err := os.MkdirTemp("", "rosetta-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	targets := []*target{{name: "direct", addr: provider.Addr()}}
	rosetta, err := startRosetta(o.proxyBin, o.procs, dir, provider.Addr())
	if err != nil {
		return err
	}
	defer rosetta.stop()
	targets = append(targets, rosetta)
	if _, err := exec.LookPath("haproxy"); err == nil {
		h, err := startHAProxy(dir, provider.Addr())
		if err != nil {
			return err
		}
		defer h.stop()
		targets = append(targets, h)
	} else {
		fmt.Fprintln(os.Stderr, "loadtest: haproxy is not installed; its row is left out")
	}

	req, err := dubbopeer.Prepare(dubbopeer.Service{Interface: "org.rosetta.bench.Echo"}, "echo", []any{strings.Repeat("x", o.payload)}, nil)
	if err != nil {
		return err
	}
	var rows []result
	for _, t := range targets {
		fixed, err := fixedRate(t, req, o)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		sat, err := saturate(t, req, o)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		fixed.saturated = sat.throughput
		rows = append(rows, fixed)
	}
	printTable(os.Stdout, o, rows)
	return nil
}

func startRosetta(bin string, procs int, dir, upstream string) (*target, error) {
	addr, admin := freeAddr(), freeAddr()
	cfg := fmt.Sprintf(`admin: {address: %q}
listeners:
- name: dubbo
  address: {socket_address: {address: 127.0.0.1, port_value: %s}}
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: dubbo
        route_config_name: bench
routes:
- name: bench
  routes:
  - name: echo
    match: {attributes: [{name: method, exact: echo}]}
    route: {cluster: echo, timeout: 5s}
clusters:
- name: echo
  connect_timeout: 1s
  load_assignment:
    cluster_name: echo
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]
`, admin, port(addr), port(upstream))
	path := filepath.Join(dir, "rosetta.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	t := &target{name: "rosetta", addr: addr, admin: admin}
	if procs > 0 {
		t.env = []string{fmt.Sprintf("GOMAXPROCS=%d", procs)}
		t.name = fmt.Sprintf("rosetta (GOMAXPROCS=%d)", procs)
	}
	if err := t.start(bin, "--config", path, "--log-level", "warn"); err != nil {
		return nil, err
	}
	return t, waitHTTP("http://"+admin+"/ready", 10*time.Second)
}

func startHAProxy(dir, upstream string) (*target, error) {
	addr := freeAddr()
	cfg := fmt.Sprintf(`global
  maxconn 4096
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend bench
  bind %s
  default_backend echo
backend echo
  server echo %s
`, addr, upstream)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	t := &target{name: "haproxy (L4 TCP)", addr: addr}
	if err := t.start("haproxy", "-f", path, "-db"); err != nil {
		return nil, err
	}
	return t, waitTCP(addr, 10*time.Second)
}
