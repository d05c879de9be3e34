// Package load is Rosetta's load harness: for one protocol it drives echo
// calls directly to a server, through rosetta-proxy and (when installed)
// through haproxy in TCP mode, in one run, and prints a table of throughput,
// latency percentiles, the proxy's CPU seconds per 1000 requests and its RSS.
// A protocol takes part through a Driver; the commands in bench/loadtest and
// in the e2e modules pick the drivers. RunMTLS measures a ConnDriver's calls
// over Istio mutual TLS (mtls.go).
package load

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// ConnDriver is a Driver whose client and server also run over connections
// and listeners the harness makes, TLS ones included, for the mutual TLS
// comparison (RunMTLS).
type ConnDriver interface {
	Driver
	// ServeListener serves echo calls with a payload of the given size on
	// ln until stop.
	ServeListener(ln net.Listener, payload int) (stop func(), err error)
	// DialConn is Dial over a connection made by the harness; the client
	// owns nc.
	DialConn(nc net.Conn, payload int) (Client, error)
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
	// TraceSampling, when above zero, adds a row of the proxy with tracing
	// on at this percentage, exporting to an OTLP receiver in the harness.
	TraceSampling float64
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
	fs.Float64Var(&o.TraceSampling, "trace-sampling", 0, "also measure the proxy with tracing on at this percentage of requests, exporting spans over OTLP/gRPC to a receiver in the harness (0: no such row)")
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
	var traced *target
	rosetta, err := startRosetta(d, o, dir, proxySetup{name: "rosetta", upstream: addr})
	if err != nil {
		return err
	}
	defer rosetta.stop()
	targets = append(targets, rosetta)
	if o.TraceSampling > 0 {
		sink, err := startSpanSink()
		if err != nil {
			return err
		}
		defer sink.stop()
		traced, err = startRosetta(d, o, dir, tracedSetup(addr, o.TraceSampling, sink))
		if err != nil {
			return err
		}
		defer traced.stop()
		targets = append(targets, traced)
		defer func() { fmt.Fprintf(w, "Spans received from the traced proxy: %d\n", sink.spans.Load()) }()
	}
	if _, err := exec.LookPath("haproxy"); err == nil {
		h, err := startHAProxy(dir, "haproxy (L4 TCP)", addr, "")
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
		ro := o
		if t == traced && o.Profile != "" {
			// The traced proxy's profile goes to FILE-traced.EXT.
			ext := filepath.Ext(o.Profile)
			ro.Profile = strings.TrimSuffix(o.Profile, ext) + "-traced" + ext
		}
		fixed, err := fixedRate(d, t, ro)
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

// proxySetup is one rosetta-proxy row: what it forwards to and how.
type proxySetup struct {
	name     string
	upstream string
	// mtlsIn makes the listener STRICT Istio mutual TLS and mtlsOut the
	// cluster originate it, as a waypoint's config from istiod has them;
	// hbone makes the proxy terminate HBONE (--hbone-address) and the
	// listener serve the streams to its own address (its filter's
	// authorities), as ztunnel CONNECTs to a service's address. Each needs
	// the proxy's identity: certs is its --cert-dir, san the provider's
	// SPIFFE ID.
	mtlsIn, mtlsOut, hbone bool
	certs, san             string
	// authz is the listener's authorization policies.
	authz []obj
	env   []string
	// tracing is the listener's sampling percentage (0: no tracing) and
	// args the proxy's further flags.
	tracing float64
	args    []string
}

func startRosetta(d Driver, o Options, dir string, s proxySetup) (*target, error) {
	addr, admin := FreeAddr(), FreeAddr()
	cfg, err := json.MarshalIndent(rosettaConfig(d, admin, addr, s), "", "  ")
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "rosetta-*.json")
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(cfg); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	t := &target{name: s.name, addr: addr, admin: admin, env: s.env}
	if o.Procs > 0 {
		t.env = append(t.env, fmt.Sprintf("GOMAXPROCS=%d", o.Procs))
		t.name = fmt.Sprintf("%s (GOMAXPROCS=%d)", s.name, o.Procs)
	}
	args := []string{"--config", f.Name(), "--log-level", "warn"}
	if s.mtlsIn || s.mtlsOut || s.hbone {
		args = append(args, "--identity", "files", "--cert-dir", s.certs)
	}
	if s.hbone {
		t.hbone = FreeAddr()
		args = append(args, "--hbone-address", t.hbone)
	}
	args = append(args, s.args...)
	if err := t.start(o.ProxyBin, args...); err != nil {
		return nil, err
	}
	if err := WaitHTTP("http://"+admin+"/ready", 10*time.Second); err != nil {
		t.stop()
		return nil, err
	}
	return t, nil
}

// obj is a JSON object of a proxy config.
type obj = map[string]any

// rosettaConfig is a static config of one listener on addr whose route
// sends the driver's echo calls to the cluster of s.upstream.
func rosettaConfig(d Driver, admin, addr string, s proxySetup) obj {
	codecName, opts := d.Codec()
	attr, value := d.Match()
	filter := obj{
		"@type":             "type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy",
		"codec":             codecName,
		"route_config_name": "bench",
	}
	if len(opts) > 0 {
		filter["codec_options"] = opts
	}
	if len(s.authz) > 0 {
		filter["authorization"] = s.authz
	}
	if s.tracing > 0 {
		filter["tracing"] = obj{"random_sampling_percentage": s.tracing}
	}
	if s.hbone {
		filter["authorities"] = []string{addr}
	}
	chain := obj{"filters": []obj{{"name": "rosetta.metaprotocol", "typed_config": filter}}}
	endpoint := obj{"endpoint": obj{"address": socketAddress(s.upstream)}}
	cluster := obj{
		"name":            "echo",
		"connect_timeout": "1s",
		"load_assignment": obj{"cluster_name": "echo", "endpoints": []obj{{"lb_endpoints": []obj{endpoint}}}},
	}
	if s.mtlsIn {
		istioInbound(chain)
	}
	if s.mtlsOut {
		istioOutbound(cluster, endpoint, s.upstream, s.san)
	}
	return obj{
		"admin":     obj{"address": admin},
		"listeners": []obj{{"name": "bench", "address": socketAddress(addr), "filter_chains": []obj{chain}}},
		"routes": []obj{{"name": "bench", "routes": []obj{{
			"name":  "echo",
			"match": obj{"attributes": []obj{{"name": attr, "exact": value}}},
			"route": obj{"cluster": "echo", "timeout": "5s"},
		}}}},
		"clusters": []obj{cluster},
	}
}

func socketAddress(addr string) obj {
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return obj{"socket_address": obj{"address": host, "port_value": n}}
}

// startHAProxy starts haproxy in TCP mode in front of upstream; ssl, when
// set, is what its bind and server lines add to terminate and originate TLS.
func startHAProxy(dir, name, upstream, ssl string) (*target, error) {
	addr := FreeAddr()
	cfg := fmt.Sprintf(`global
  maxconn 4096
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend bench
  bind %s%s
  default_backend echo
backend echo
  server echo %s%s
`, addr, ssl, upstream, ssl)
	f, err := os.CreateTemp(dir, "haproxy-*.cfg")
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(cfg); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	t := &target{name: name, addr: addr}
	if err := t.start("haproxy", "-f", f.Name(), "-db"); err != nil {
		return nil, err
	}
	if err := WaitTCP(addr, 10*time.Second); err != nil {
		t.stop()
		return nil, err
	}
	return t, nil
}
