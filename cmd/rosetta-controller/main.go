// Command rosetta-controller watches the mesh's configuration (the API
// server, or a folder of YAML files) and serves each Rosetta proxy its
// listeners, routes, clusters and endpoints over xDS.
//
//	rosetta-controller --config-dir examples/controlplane/config
//	rosetta-controller --kubeconfig ~/.kube/config
//	rosetta-controller --xds-identity=istiod --xds-auth=token   # in a pod
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/experimental"
	meshconfig "istio.io/api/mesh/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/rosetta-mesh/rosetta/internal/cli"
	"github.com/rosetta-mesh/rosetta/internal/memlimit"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/observability"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	_ "github.com/rosetta-mesh/rosetta/protocols/standard/control" // the protocols the controller serves
)

type flags struct {
	traceSampling  string
	configDir      string
	kubeconfig     string
	xdsAddr        string
	httpAddr       string
	debugAddr      string
	exposeDebug    bool
	debounce       time.Duration
	debounceMax    time.Duration
	dnsRefresh     time.Duration
	domainSuffix   string
	rootNamespace  string
	leaderElect    bool
	leaseNamespace string
	leaseName      string
	log            cli.Log
	secretRefresh  time.Duration
	steeringPorts  string
	accessLog      accessLogFlags
	meshConfig     string
	xds            xdsSecurity
	lazyFallback   string
	// memoryLimit is Go's soft memory limit; 0: from the container's.
	memoryLimit int64
}

// register defines the controller's flags on fs.
func (f *flags) register(fs *pflag.FlagSet) {
	fs.SortFlags = false
	fs.StringVar(&f.configDir, "config-dir", "", "read the config from the YAML files of this folder (and reload on change) instead of the API server")
	fs.StringVar(&f.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file; in-cluster config when empty")
	fs.StringVar(&f.xdsAddr, "xds-address", ":15010", "address the xDS (ADS) gRPC server listens on")
	fs.StringVar(&f.httpAddr, "http-address", ":15014", "address of /healthz, /readyz and /metrics, for probes and Prometheus")
	fs.StringVar(&f.debugAddr, "debug-address", "127.0.0.1:15015", "address of /debug/status, /debug/config_dump and /debug/pprof/; must be a loopback address unless --expose-debug; off when empty")
	fs.BoolVar(&f.exposeDebug, "expose-debug", false, "allow --debug-address on an address other than loopback, where anything that reaches it can read every proxy's config and take profiles")
	fs.DurationVar(&f.debounce, "debounce", 100*time.Millisecond, "a change after this long without a push is pushed at once; changes during a push or this soon after one are pushed together once this long passes without another (a file written in place, not renamed into place, always waits)")
	fs.DurationVar(&f.debounceMax, "debounce-max", time.Second, "longest delay of a burst's push after its first change")
	fs.DurationVar(&f.dnsRefresh, "dns-refresh", controller.DefaultDNSRefresh, "how often names resolved by DNS (ServiceEntries with resolution DNS, FQDN EndpointSlices, Redis hosts) are looked up again; a changed answer is pushed; 0 or less: never")
	fs.StringVar(&f.domainSuffix, "domain-suffix", "cluster.local", "Kubernetes cluster domain")
	fs.StringVar(&f.rootNamespace, "root-namespace", "istio-system", "namespace of mesh-wide defaults (Sidecar)")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "elect a leader to write status (Kubernetes mode); every replica serves xDS")
	fs.StringVar(&f.leaseNamespace, "leader-election-namespace", envOr("POD_NAMESPACE", "rosetta-system"), "namespace of the leader election Lease")
	fs.StringVar(&f.leaseName, "leader-election-id", "rosetta-controller", "name of the leader election Lease")
	f.log.Register(fs, "info")
	fs.DurationVar(&f.secretRefresh, "secret-refresh", controller.DefaultSecretRefresh, "how often the Secrets Redis auth names are read again (Kubernetes mode: the controller gets them by name and does not watch Secrets)")
	fs.StringVar(&f.steeringPorts, "steering-ports", fmt.Sprintf("%d-%d", controller.DefaultSteeringPorts.First, controller.DefaultSteeringPorts.Last),
		"waypoint ports (first-last) allocated to the service ports steered to a waypoint (Kubernetes mode; label "+controller.UseWaypointLabel+"); empty: no steering")
	fs.StringVar(&f.traceSampling, "trace-sampling", os.Getenv("PILOT_TRACE_SAMPLING"), "turn tracing on in every listener: the percentage (0-100) of requests without a sampled caller that start a trace, as Istio's mesh-wide sampling (default: istiod's PILOT_TRACE_SAMPLING from the environment; empty: no tracing); proxies send spans to their --otlp-endpoint")
	f.accessLog.register(fs)
	fs.StringVar(&f.meshConfig, "mesh-config", "", "Istio's mesh config (YAML, the istio ConfigMap's \"mesh\" key, as istiod's --meshConfig): the extensionProviders and defaultProviders that Telemetry resources name (docs/tracing.md); empty: only Istio's built-in \"envoy\" access log provider")
	f.xds.register(fs)
	memlimit.Register(fs, &f.memoryLimit)
	fs.StringVar(&f.lazyFallback, "lazy-fallback", "", "the address (DNS name or IP, no port) of the shared, fully configured rosetta-proxy that proxies in lazy mode (rosetta-proxy --lazy) send the calls to destinations they have not used yet, at the destination's port, e.g. rosetta-fallback.rosetta-system.svc.cluster.local (a Service's DNS name: proxies with an identity reach its pods over Istio mTLS); empty: lazy proxies get every destination's config")
}

// parseFlags reads the flags from args, as the command line does.
func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := pflag.NewFlagSet("rosetta-controller", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return f, f.check()
}

// check refuses flags that cannot work together.
func (f *flags) check() error {
	if err := f.accessLog.check(); err != nil {
		return err
	}
	if f.steeringPorts != "" {
		if _, err := controller.ParsePortRange(f.steeringPorts); err != nil {
			return fmt.Errorf("--steering-ports: %w", err)
		}
	}
	if _, err := f.sampling(); err != nil {
		return fmt.Errorf("--trace-sampling: %w", err)
	}
	if err := checkLazyFallback(f.lazyFallback); err != nil {
		return fmt.Errorf("--lazy-fallback: %w", err)
	}
	if _, err := f.mesh(); err != nil {
		return fmt.Errorf("--mesh-config: %w", err)
	}
	return nil
}

// mesh is the --mesh-config file read; nil when none is given.
func (f *flags) mesh() (*meshconfig.MeshConfig, error) {
	if f.meshConfig == "" {
		return nil, nil
	}
	data, err := os.ReadFile(f.meshConfig)
	if err != nil {
		return nil, err
	}
	return controller.ParseMeshConfig(data)
}

// sampling is --trace-sampling as a percentage; nil when tracing is off.
func (f *flags) sampling() (*float64, error) {
	if f.traceSampling == "" {
		return nil, nil
	}
	p, err := strconv.ParseFloat(f.traceSampling, 64)
	if err != nil || math.IsNaN(p) || p < 0 || p > 100 {
		return nil, fmt.Errorf("%q is not a percentage from 0 to 100", f.traceSampling)
	}
	return &p, nil
}

// checkSource refuses to start with no config source outside a cluster,
// saying which flags give one.
func (f *flags) checkSource() error {
	if f.configDir == "" && f.kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return errors.New("no config source: outside a cluster give --config-dir FOLDER (YAML files, reloaded on change) or --kubeconfig FILE (an API server)")
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "rosetta-controller:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "rosetta-controller (--config-dir FOLDER | --kubeconfig FILE | in a pod) [flags]",
		Short: "Rosetta's control plane: translates Istio and Rosetta resources into MetaProtocol config and serves it to rosetta-proxy over xDS",
		Long: `rosetta-controller watches the mesh's configuration (ServiceEntries,
VirtualServices, DestinationRules, Sidecars, AuthorizationPolicies, Services
and EndpointSlices, and Rosetta's MetaRouters, ApplicationProtocols and each
protocol's own resources) and serves every rosetta-proxy its listeners,
routes, clusters and endpoints over xDS (ADS, gRPC), scoped to what it can
reach. The leader writes status and the Istio resources that steer callers
to a waypoint.

It reads its configuration from one of:
  --config-dir FOLDER  YAML files, reloaded when they change (no cluster)
  --kubeconfig FILE    an API server, through informers
  (neither)            the API server of the cluster it runs in

  rosetta-controller --config-dir examples/controlplane/config
  rosetta-controller --kubeconfig ~/.kube/config
  rosetta-controller --xds-identity=istiod --xds-auth=token   # in a pod`,
		Version:       cli.Version(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if err := f.checkSource(); err != nil {
				return err
			}
			log, err := f.log.Logger(os.Stderr)
			if err != nil {
				return err
			}
			// The first sync's garbage would otherwise let the heap grow
			// past a container's limit while what is live fits in it
			// (docs/benchmarks.md, "The controller's memory").
			memlimit.Set(f.memoryLimit).Log(log)
			// Responses marshaled into buffers near their size, not 1 MiB.
			experimental.SetDefaultBufferPool(xds.ResponseBuffers())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, f, log)
		},
	}
	f.register(cmd.Flags())
	cmd.MarkFlagsMutuallyExclusive("config-dir", "kubeconfig")
	return cmd
}

func run(ctx context.Context, f *flags, log *slog.Logger) error {
	// Everything run starts ends with ctx, or when one part fails.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	xdsOpts := xds.Options{Logger: log, Registerer: reg}
	inCluster := f.configDir == "" && f.kubeconfig == ""
	if err := f.xds.configure(ctx, f.kubeconfig, inCluster, log, reg, &xdsOpts); err != nil {
		return err
	}
	srv := xds.NewServer(ctx, xdsOpts)
	var ready atomic.Bool

	xdsLis, err := net.Listen("tcp", f.xdsAddr)
	if err != nil {
		return fmt.Errorf("listen xds: %w", err)
	}
	httpLis, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("listen http: %w", err)
	}
	debugLis, err := listenDebug(f)
	if err != nil {
		return err
	}
	log.Info("serving", "xds", xdsLis.Addr().String(), "http", httpLis.Addr().String(), "debug", addrOf(debugLis))

	sampling, _ := f.sampling() // checked by parseFlags
	mesh, _ := f.mesh()         // checked by parseFlags
	pipe := &controller.Pipeline{
		Builder: &controller.Builder{Options: controller.Options{DomainSuffix: f.domainSuffix, RootNamespace: f.rootNamespace, TraceSampling: sampling, AccessLog: f.accessLog.config(),
			LazyFallback: f.lazyFallback, Mesh: mesh}},
		MinDelay:   f.debounce,
		MaxDelay:   f.debounceMax,
		Log:        log,
		Metrics:    controller.NewMetrics(reg),
		DNSRefresh: pipelineDNSRefresh(f.dnsRefresh),
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	goRun := func(fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				errs <- err
			}
		}()
	}
	httpSrv := &http.Server{Handler: monitoringMux(reg, &ready), ReadHeaderTimeout: 5 * time.Second}
	goRun(func() error { return serveHTTP(httpSrv, httpLis, "http") })
	debugSrv := &http.Server{Handler: debugMux(srv), ReadHeaderTimeout: 5 * time.Second}
	if debugLis != nil {
		goRun(func() error { return serveHTTP(debugSrv, debugLis, "debug") })
	}
	goRun(func() error { return srv.Serve(ctx, xdsLis) })

	if f.configDir != "" {
		err = runFolder(ctx, f, log, pipe, srv, &ready, goRun)
	} else {
		err = runKube(ctx, f, log, pipe, srv, &ready, goRun)
	}
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	cancel()
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	for _, h := range []*http.Server{httpSrv, debugSrv} {
		if serr := h.Shutdown(shutdown); serr != nil {
			log.Warn("http shutdown", "err", serr)
		}
	}
	wg.Wait()
	return err
}

// pipelineDNSRefresh turns --dns-refresh into Pipeline.DNSRefresh, where 0
// means the default: the flag's 0 means never.
func pipelineDNSRefresh(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// runFolder is the Kubernetes-free mode: the folder is the source of
// truth, and statuses are logged rather than written. The folder is read
// once at the start, by RunDir, whose error (a folder that cannot be
// read) ends run.
func runFolder(ctx context.Context, f *flags, log *slog.Logger, pipe *controller.Pipeline, srv *xds.Server, ready *atomic.Bool, goRun func(func() error)) error {
	var last, lastAuthz map[string]controller.RouterStatus
	pipe.Push = func(ix *controller.Index, changedAt time.Time) {
		srv.Update(ix, changedAt)
		last = logStatuses(log, ix.Statuses, last)
		lastAuthz = logStatuses(log, ix.AuthorizationStatuses(), lastAuthz)
		ready.Store(true)
	}
	goRun(func() error { return pipe.RunDir(ctx, f.configDir) })
	log.Info("folder mode", "dir", f.configDir)
	return nil
}

// logStatuses logs each MetaRouter whose status message changed. It
// keeps the statuses it was given, and compares each condition with the
// last one of its router and type field by field (a push's statuses are
// mostly the last push's own).
func logStatuses(log *slog.Logger, st, last map[string]controller.RouterStatus) map[string]controller.RouterStatus {
	for k, s := range st {
		before := last[k].Conditions
		if len(before) > 0 && len(before) == len(s.Conditions) && &before[0] == &s.Conditions[0] {
			continue // the conditions the last push had, kept by the build
		}
		for i, c := range s.Conditions {
			if i < len(before) && sameCondition(before[i], c) {
				continue
			}
			lvl := slog.LevelInfo
			if c.Status != "True" {
				lvl = slog.LevelWarn
			}
			log.Log(context.Background(), lvl, "metarouter status", "metarouter", k, "condition", c.Type, "status", c.Status, "reason", c.Reason, "message", c.Message)
		}
	}
	return st
}

func sameCondition(a, b metav1.Condition) bool {
	return a.Type == b.Type && a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

func runKube(ctx context.Context, f *flags, log *slog.Logger, pipe *controller.Pipeline, srv *xds.Server, ready *atomic.Bool, goRun func(func() error)) error {
	cfg, err := restConfig(f.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes config: %w", err)
	}
	cfg.UserAgent = "rosetta-controller"
	if f.steeringPorts != "" {
		pipe.Builder.Options.SteeringPorts, _ = controller.ParsePortRange(f.steeringPorts) // checked by parseFlags
	}
	src, err := controller.NewKubeSource(cfg, pipe.Changed)
	if err != nil {
		return err
	}
	src.SecretRefresh, src.Log = f.secretRefresh, log
	// MetaRouter statuses also say which proxies refuse the config that
	// carries them (an xDS NACK).
	status := &controller.StatusWriter{Client: src.Dynamic, Current: src.MetaRouterObject, Kind: "MetaRouter", Log: log,
		Amend: srv.WithRejections, Refresh: srv.RejectionsChanged()}
	// The objects of the protocols' own kinds (RedisServices, ...), found
	// through the translator registry.
	protoStatus := &controller.StatusWriter{Client: src.Dynamic, Current: src.ProtocolObject, Kind: "protocol object", Log: log}
	authzStatus := &controller.StatusWriter{Client: src.Dynamic, Current: src.AuthorizationObject, Kind: "authorization policy", Log: log}
	// Steering's Services and VirtualServices, and the conditions the
	// controller keeps on Services.
	owned := &controller.OwnedWriter{Client: src.Dynamic, Cache: src, Log: log}
	pipe.Inputs = src.Inputs
	setStatuses := func(ix *controller.Index) {
		status.Set(ix.Statuses)
		protoStatus.Set(ix.ProtocolStatuses())
		authzStatus.Set(ix.AuthorizationStatuses())
		owned.Set(ix.Owned(), ix.ServiceConditions())
	}
	// last is the index of the last push; Push and Unchanged run on the
	// pipeline's goroutine.
	var last *controller.Index
	pipe.Push = func(ix *controller.Index, changedAt time.Time) {
		srv.Update(ix, changedAt)
		last = ix
		setStatuses(ix)
		ready.Store(true)
	}
	// A change to no proxy's config may be a status another writer
	// changed: the writers compare again and write ours back.
	pipe.Unchanged = func() {
		if last != nil {
			setStatuses(last)
		}
	}
	if err := src.Start(ctx); err != nil {
		return err
	}
	log.Info("informer caches synced")
	goRun(func() error { pipe.Run(ctx); return nil })
	pipe.Changed()
	if !f.leaderElect {
		goRun(func() error { status.Run(ctx); return nil })
		goRun(func() error { protoStatus.Run(ctx); return nil })
		goRun(func() error { authzStatus.Run(ctx); return nil })
		goRun(func() error { owned.Run(ctx); return nil })
		return nil
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	id, err := os.Hostname()
	if err != nil {
		return err
	}
	id = fmt.Sprintf("%s_%d", id, os.Getpid())
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, f.leaseNamespace, f.leaseName, kc.CoreV1(), kc.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		return fmt.Errorf("leader election lock: %w", err)
	}
	goRun(func() error {
		// Run again after losing the lease, until ctx ends: a replica that
		// lost leadership keeps serving xDS and may lead again.
		for ctx.Err() == nil {
			leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
				Lock: lock, ReleaseOnCancel: true,
				LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
				Callbacks: leaderelection.LeaderCallbacks{
					OnStartedLeading: func(lctx context.Context) {
						log.Info("leading: writing MetaRouter status", "id", id)
						go protoStatus.Run(lctx)
						go authzStatus.Run(lctx)
						go owned.Run(lctx)
						status.Run(lctx)
					},
					OnStoppedLeading: func() { log.Info("stopped leading", "id", id) },
				},
			})
		}
		return nil
	})
	return nil
}

// listenDebug opens --debug-address, or returns nil when it is empty.
func listenDebug(f *flags) (net.Listener, error) {
	if f.debugAddr == "" {
		return nil, nil
	}
	ln, err := observability.ListenDebug(f.debugAddr, f.exposeDebug)
	if err != nil {
		return nil, fmt.Errorf("listen debug: %w (--expose-debug allows it)", err)
	}
	return ln, nil
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

func serveHTTP(srv *http.Server, ln net.Listener, name string) error {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// monitoringMux is what the kubelet and Prometheus reach: health,
// readiness and metrics, and nothing that shows configuration.
func monitoringMux(reg *prometheus.Registry, ready *atomic.Bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready: no config pushed yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// debugMux shows the connected proxies and what each acknowledged or
// refused (/debug/status), every proxy's config (routes, upstream
// addresses, codec options; secret values redacted) and profiles the
// controller: it is served on loopback unless --expose-debug.
func debugMux(srv *xds.Server) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/debug/status", srv.StatusHandler())
	mux.HandleFunc("/debug/config_dump", func(w http.ResponseWriter, r *http.Request) {
		node := r.URL.Query().Get("node")
		if node == "" {
			writeJSON(w, map[string]any{"nodes": srv.Nodes()})
			return
		}
		res := srv.Resources(node)
		if res == nil {
			http.Error(w, "no such proxy connected", http.StatusNotFound)
			return
		}
		d, err := controller.DumpResources(res)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, d)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(append(js, '\n')); err != nil {
		slog.Debug("write response", "err", err)
	}
}
