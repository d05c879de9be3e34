// Command rosetta-proxy is Rosetta's data plane. It runs from a static config
// file (--config) or from the controller over xDS (--xds), never both.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/cli"
	"github.com/rosetta-mesh/rosetta/internal/gcpace"
	"github.com/rosetta-mesh/rosetta/internal/memlimit"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	xdsclient "github.com/rosetta-mesh/rosetta/pkg/xds/client"
	_ "github.com/rosetta-mesh/rosetta/protocols/standard"
	"github.com/spf13/cobra"
)

type options struct {
	configFile string
	admin      adminOptions
	drain      time.Duration
	log        cli.Log
	xds        xdsclient.Options
	labels     string
	// concurrency is how many threads run Go code at once (GOMAXPROCS)
	// and so how many event loops read; 0 is defaultConcurrency.
	concurrency int
	// gcPercent is Go's GOGC, unless GOGC is set in the environment.
	gcPercent int
	// gcPaceMB caps the heap goal gcpace may raise GOGC to, in MB; 0 is off.
	gcPaceMB int
	identity identityOptions
	// xdsMTLS presents the workload identity to the controller.
	xdsMTLS bool
	// xdsControllerIDs are the SPIFFE IDs the controller may have, k,k.
	xdsControllerIDs string
	// limits bound what peers can make the proxy hold.
	limits proxy.Limits
	// memoryLimit is Go's soft memory limit; 0: from the container's.
	memoryLimit int64
	// memory is the soft memory limit setUpRuntime set, logged by run.
	memory memlimit.Limit
	// hboneAddress is where the proxy terminates HBONE; "": it does not.
	hboneAddress string
	otlp         otlpOptions
	// loops turns the event loops and gathering on or off.
	loops netloop.Options
	// metrics choose what the proxy exports.
	metrics metricsOptions
	lazy    lazyOptions
}

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "rosetta-proxy:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "rosetta-proxy (--config FILE | --xds ADDR) [flags]",
		Short: "Rosetta's data plane: a proxy for Dubbo, Thrift, tRPC, Redis and the other codecs it is built with",
		Long: `rosetta-proxy parses each connection's frames with its protocol's codec,
routes every request on its attributes, and load-balances it to endpoints
over pooled upstream connections, with timeouts, retries, mirroring, rate
limits, faults, mutations, Istio mutual TLS and authorization.

It takes its config from exactly one of:
  --config FILE  a static file (listeners, routes, clusters, endpoints),
                 applied again when it changes or on SIGHUP
  --xds ADDR     rosetta-controller over ADS (delta xDS, or state of the
                 world with --xds-mode=sotw), scoped by --namespace and
                 --labels; --xds-mtls, --xds-ca-file and --xds-token-file
                 secure that connection`,
		Version:       cli.Version(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(*cobra.Command, []string) error {
			o.memory = setUpRuntime(o)
			return run(o)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.configFile, "config", "", "static config file (listeners, routes, clusters, endpoints), applied again when it changes or on SIGHUP; a bad edit is refused and the last good config stays")
	fs.StringVar(&o.xds.Address, "xds", "", "the controller's xDS address (host:port); the proxy then takes its config over ADS")
	o.log.Register(fs, "info")
	o.admin.register(fs)
	fs.DurationVar(&o.drain, "drain-timeout", 20*time.Second, "how long requests in flight may take to finish on shutdown")
	fs.StringVar(&o.xds.NodeID, "node-id", "", "this proxy's xDS node id (with --xds; default: the host name)")
	fs.StringVar(&o.xds.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "this proxy's namespace, for config scoping (with --xds)")
	fs.StringVar(&o.labels, "labels", "", "this proxy's workload labels as k=v,k=v, for config scoping (with --xds)")
	fs.StringVar(&o.xds.Mode, "mode", "gateway", "how traffic reaches this proxy: gateway or sidecar (with --xds)")
	fs.StringVar(&o.xds.ListenAddress, "listen-address", "0.0.0.0", "the IP the controller binds this proxy's listeners to (with --xds)")
	fs.BoolVar(&o.xdsMTLS, "xds-mtls", false, "authenticate to the controller with the workload identity (--identity) over mutual TLS; the controller's certificate must then be a mesh one, unless --xds-ca-file is given")
	fs.StringVar(&o.xdsControllerIDs, "xds-controller-id", "", "SPIFFE IDs the controller's certificate may have, comma-separated (with --xds-mtls; default: any identity of the proxy's trust domain)")
	fs.StringVar(&o.xds.CAFile, "xds-ca-file", "", "PEM roots that verify the controller's serving certificate by DNS name or IP (turns on TLS to the controller)")
	fs.StringVar(&o.xds.ServerName, "xds-server-name", "", "the name the controller's serving certificate must have (default: the host of --xds)")
	fs.StringVar(&o.xds.TokenFile, "xds-token-file", "", "a projected ServiceAccount token (audience rosetta) sent to the controller, re-read on each reconnect; needs TLS to the controller")
	registerXDSMode(fs, &o.xds.Delta)
	o.lazy.register(fs)
	o.identity.register(fs)
	o.otlp.register(fs)
	fs.StringVar(&o.hboneAddress, "hbone-address", "", "terminate HBONE (Istio ambient's HTTP/2 CONNECT over mutual TLS, which ztunnel sends a waypoint) on this address, e.g. :15008; needs --identity (empty: off)")
	registerLimits(fs, &o.limits)
	o.metrics.register(fs)
	fs.IntVar(&o.concurrency, "concurrency", 0, "threads that run the proxy at once, as Envoy's --concurrency (0: one per CPU but one, at least one; GOMAXPROCS in the environment wins)")
	o.loops = netloop.DefaultOptions()
	fs.BoolVar(&o.loops.EventLoops, "event-loops", o.loops.EventLoops, "read sockets on epoll event loops (Linux); false gives every connection a reader goroutine of its own (environment: ROSETTA_EVENT_LOOPS=off)")
	fs.BoolVar(&o.loops.Gather, "gather", o.loops.Gather, "let an event loop poll briefly for the requests its clients owe a server that answers in order (Redis) and write them at once; false for a CPU quota, which counts the polling (environment: ROSETTA_GATHER=off)")
	fs.IntVar(&o.gcPercent, "gc-percent", 200, "Go's GOGC: heap growth between collections, in percent of the live heap; GOGC in the environment wins")
	fs.IntVar(&o.gcPaceMB, "gc-pace-heap", 32, "while the proxy allocates fast, let the heap grow to up to this many MB between collections, to space them at least 250 ms apart (0: off; off when GOGC is in the environment)")
	memlimit.Register(fs, &o.memoryLimit)
	cmd.MarkFlagsOneRequired("config", "xds")
	cmd.MarkFlagsMutuallyExclusive("config", "xds")
	return cmd
}

// concurrency is the GOMAXPROCS the proxy runs with: the flag's, else
// one per CPU Go gives it (cpus, which follows a container's CPU limit)
// but one, at least one; 0 leaves GOMAXPROCS from the environment as it
// is. The CPU left over is for what shares the machine: the application
// beside a sidecar, the kernel's network work, the peers. On two cores one
// loop serves a fixed load with less CPU and latency than two
// (docs/benchmarks.md#tuning-constants).
func concurrency(flag int, env string, cpus int) int {
	switch {
	case flag > 0:
		return flag
	case env != "":
		return 0
	}
	return max(1, cpus-1)
}

// setUpRuntime applies the flags that tune Go's runtime and the loops,
// before anything runs, and returns the soft memory limit it set.
func setUpRuntime(o options) memlimit.Limit {
	if n := concurrency(o.concurrency, os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0)); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	netloop.Configure(o.loops)
	if os.Getenv("GOGC") == "" {
		// Go's default of 100 collects about every 4 MB a loaded proxy
		// allocates; 200 saves CPU for a few MB of RSS
		// (docs/benchmarks.md#tuning-constants, --gc-percent).
		debug.SetGCPercent(o.gcPercent)
	}
	return memlimit.Set(o.memoryLimit)
}

func run(o options) error {
	log, err := o.log.Logger(os.Stderr)
	if err != nil {
		return err
	}
	if (o.configFile == "") == (o.xds.Address == "") {
		return errors.New("give exactly one of --config FILE and --xds ADDR")
	}
	if o.memory.Source != "" {
		o.memory.Log(log)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A negative --gc-percent turns the collector off; pacing would turn
	// it back on.
	if os.Getenv("GOGC") == "" && o.gcPaceMB > 0 && o.gcPercent > 0 {
		go gcpace.Run(ctx, o.gcPercent, uint64(o.gcPaceMB)<<20)
	}
	p := proxy.New(log)
	p.SetLimits(o.limits)
	if err := o.metrics.apply(p, o.xds.Mode); err != nil {
		return err
	}
	id, err := o.identity.start(ctx, log)
	if err != nil {
		return err
	}
	if id != nil {
		p.UseIdentity(id)
		p.Metrics().Identity(id.Rotations, func() time.Time { return id.Current().NotAfter })
		o.xds.WorkloadID = id.Current().ID.String()
	}
	tracer, err := o.otlp.start(ctx, id)
	if err != nil {
		return err
	}
	if tracer != nil {
		p.UseTracer(tracer)
		// Spans still queued go out after the drain, in a bounded time.
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tracer.Shutdown(sctx)
		}()
	}
	if o.hboneAddress != "" {
		if id == nil {
			return errors.New("--hbone-address needs --identity: HBONE is Istio mutual TLS, served with the workload certificate")
		}
		if _, err := p.ListenHBONE(o.hboneAddress); err != nil {
			return err
		}
		o.xds.HBONE = true
	}
	if o.xdsMTLS {
		if id == nil {
			return errors.New("--xds-mtls needs --identity")
		}
		o.xds.Identity = id
	}
	if err := o.lazy.start(ctx, p, &o.xds); err != nil {
		return err
	}
	if o.xdsControllerIDs != "" {
		o.xds.ControllerIDs = strings.Split(o.xdsControllerIDs, ",")
	}
	var bootAdmin string
	if o.configFile != "" {
		cf := &configFile{path: o.configFile, apply: p.Apply, log: log}
		boot, err := cf.load()
		if err != nil {
			return err
		}
		bootAdmin = boot.Admin.Address
		if err := cf.watch(ctx); err != nil {
			return err
		}
	}
	lns, err := o.admin.listen(bootAdmin)
	if err != nil {
		return err
	}
	defer lns.close()
	lns.serve(p)
	if o.xds.Address != "" {
		if err := startXDS(ctx, log, o, p); err != nil {
			return err
		}
	}
	source := []any{"config", o.configFile}
	if o.xds.Address != "" {
		source = []any{"xds", o.xds.Address, "xds_mode", (*xdsMode)(&o.xds.Delta).String()}
	}
	log.Info("rosetta-proxy started", append(source, "hbone", o.hboneAddress, "admin", lns.admin.Addr().String(), "metrics", lns.metricsAddr())...)
	<-ctx.Done()
	log.Info("draining", "timeout", o.drain)
	dctx, cancel := context.WithTimeout(context.Background(), o.drain)
	defer cancel()
	// A drain that runs out of time still ends the process cleanly: the
	// connections left are closed, as Envoy does after --drain-time-s.
	_ = p.Shutdown(dctx)
	return nil
}

// startXDS subscribes to the controller; every consistent set of resources
// is applied, and one the proxy refuses is NACKed with the reason.
func startXDS(ctx context.Context, log *slog.Logger, o options, p *proxy.Proxy) error {
	xo := o.xds
	if xo.NodeID == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--node-id: %w", err)
		}
		xo.NodeID = host
	}
	labels, err := parseLabels(o.labels)
	if err != nil {
		return err
	}
	xo.Labels, xo.Logger = labels, log
	go func() { _ = xdsclient.Run(ctx, xo, p.Apply) }()
	return nil
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
