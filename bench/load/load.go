// Package load is Rosetta's load harness: for one protocol it drives echo
// calls directly to a server, through rosetta-proxy and (when installed)
// through haproxy in TCP mode, in one run, and prints a table of throughput,
// latency percentiles, the proxy's CPU seconds per 1000 requests and its RSS.
// A protocol takes part through a Driver; the commands in bench/loadtest and
// in the e2e modules pick the drivers.
package load

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Driver is one protocol's part of a load test.
type Driver interface {
	// Name titles the table ("Dubbo").
	Name() string
	// Listener is the MetaProtocolProxy filter's codec and options, and the
	// route match (attribute and exact value) every echo call satisfies.
	Codec() (name string, options map[string]string)
	Match() (attribute, value string)
	// Serve starts an echo server on loopback.
	Serve() (addr string, stop func(), err error)
	// Dial connects a client that sends echo calls with a payload of the
	// given size; its Call must be safe for concurrent use.
	Dial(addr string, payload int) (Client, error)
}

// Client makes echo calls over one connection.
type Client interface {
	Call() error
	Close() error
}

// Options are the harness's settings.
type Options struct {
	ProxyBin string
	Duration time.Duration
	Rate     int
	Conns    int
	Payload  int
	Inflight int
	Profile  string
	Procs    int
}

// RegisterFlags binds the options to command-line flags.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.ProxyBin, "proxy", "bin/rosetta-proxy", "the rosetta-proxy binary")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each fixed-rate run lasts (saturation runs last half as long)")
	fs.IntVar(&o.Rate, "rate", 1000, "requests per second of the fixed-rate runs")
	fs.IntVar(&o.Conns, "conns", 16, "client connections")
	fs.IntVar(&o.Payload, "payload", 1024, "bytes of the echoed payload")
	fs.IntVar(&o.Inflight, "inflight", 8, "calls in flight per connection in the saturation runs")
	fs.IntVar(&o.Procs, "proxy-procs", 0, "GOMAXPROCS of rosetta-proxy (0: the Go default, one per core)")
	fs.StringVar(&o.Profile, "profile", "", "write a CPU profile of rosetta-proxy during its fixed-rate run to this file")
}

// Run measures d and writes its table to w.
func Run(d Driver, o Options, w io.Writer) error {
	addr, stop, err := d.Serve()
	if err != nil {
		return err
	}
	defer stop()
	dir, err := os.MkdirTemp("", "rosetta-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	targets := []*target{{name: "direct", addr: addr}}
	rosetta, err := startRosetta(d, o, dir, addr)
	if err != nil {
		return err
	}
	defer rosetta.stop()
	targets = append(targets, rosetta)
	if _, err := exec.LookPath("haproxy"); err == nil {
		h, err := startHAProxy(dir, addr)
		if err != nil {
			return err
		}
		defer h.stop()
		targets = append(targets, h)
	} else {
		fmt.Fprintln(os.Stderr, "load: haproxy is not installed; its row is left out")
	}
	var rows []result
	for _, t := range targets {
		fixed, err := fixedRate(d, t, o)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		sat, err := saturate(d, t, o)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		fixed.saturated = sat.throughput
		rows = append(rows, fixed)
	}
	printTable(w, d.Name(), o, rows)
	return nil
}

func startRosetta(d Driver, o Options, dir, upstream string) (*target, error) {
	addr, admin := FreeAddr(), FreeAddr()
	name, opts := d.Codec()
	attr, value := d.Match()
	cfg := fmt.Sprintf(`admin: {address: %q}
listeners:
- name: bench
  address: {socket_address: {address: 127.0.0.1, port_value: %s}}
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: %s
        codec_options: %s
        route_config_name: bench
routes:
- name: bench
  routes:
  - name: echo
    match: {attributes: [{name: %q, exact: %q}]}
    route: {cluster: echo, timeout: 5s}
clusters:
- name: echo
  connect_timeout: 1s
  load_assignment:
    cluster_name: echo
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]
`, admin, Port(addr), name, jsonMap(opts), attr, value, Port(upstream))
	path := filepath.Join(dir, "rosetta.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	t := &target{name: "rosetta", addr: addr, admin: admin}
	if o.Procs > 0 {
		t.env = []string{fmt.Sprintf("GOMAXPROCS=%d", o.Procs)}
		t.name = fmt.Sprintf("rosetta (GOMAXPROCS=%d)", o.Procs)
	}
	if err := t.start(o.ProxyBin, "--config", path, "--log-level", "warn"); err != nil {
		return nil, err
	}
	return t, WaitHTTP("http://"+admin+"/ready", 10*time.Second)
}

func jsonMap(m map[string]string) string {
	out := "{"
	for k, v := range m {
		if len(out) > 1 {
			out += ", "
		}
		out += fmt.Sprintf("%q: %q", k, v)
	}
	return out + "}"
}

func startHAProxy(dir, upstream string) (*target, error) {
	addr := FreeAddr()
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
	return t, WaitTCP(addr, 10*time.Second)
}
