package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/spf13/cobra"

	dubboexample "github.com/rosetta-mesh/rosetta/examples/dubbo"
	"github.com/rosetta-mesh/rosetta/internal/cli"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

type demoOptions struct {
	configFile string
	thriftFile string
	redisFile  string
	// controlPlaneDir and skipControlPlane: see runControlPlaneDemo.
	controlPlaneDir  string
	skipControlPlane bool
	fixedPorts       bool
	calls            int
	concurrency      int
	verbose          bool
}

// The service the demo calls; demo.yaml routes on it.
var (
	greeter        = dubbopeer.Service{Interface: "org.example.Greeter", Version: "1.0.0"}
	unknownService = dubbopeer.Service{Interface: "org.example.Unknown", Version: "1.0.0"}
	demoMethods    = []string{"sayHello", "sayGoodbye", "howAreYou"}
)

func newDemoCmd() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the controller and a proxy over xDS, then proxies with Dubbo, Thrift and Redis servers and clients, in this process, and show the routing",
		Long: `Demo first runs the controller in folder mode on a copy of
examples/controlplane/config and a proxy that takes its config from it over xDS,
shows a MetaRouter edit reach the proxy, and prints the commands to do the same by hand.
Then it loads examples/dubbo/demo.yaml (a built-in copy, or --config) with the proxy's
config loader, starts one Dubbo provider per cluster endpoint, a Rosetta proxy with
that config, and a Dubbo consumer that calls through the proxy. It prints which
provider answered each method (method routing and a weighted split), then a call no
route matches and a call the provider fails. Then it does the same for Thrift with
examples/thrift/demo.yaml (or --thrift-config): Apache Thrift's generated Go client
and servers, framed binary; then Redis with examples/redis/demo.yaml (or --redis-config):
go-redis and two embedded Redis servers. Nothing but this binary is needed; it binds loopback
ports only, free ones unless --fixed-ports.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f, _ := outputFormat(cmd); f != outputTable {
				return fmt.Errorf("demo: --output %s: the demo tells what it does as it goes; it has no document to print", f)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
			defer cancel()
			return runDemo(ctx, cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "config file (default: the built-in copy of "+dubboexample.DemoConfigPath+")")
	f.StringVar(&o.thriftFile, "thrift-config", "", "config file of the Thrift part (default: the built-in copy of "+thriftDemoConfigPath+")")
	f.StringVar(&o.redisFile, "redis-config", "", "config file of the Redis part (default: the built-in copy of examples/redis/demo.yaml)")
	f.StringVar(&o.controlPlaneDir, "controlplane-config", "", "folder of the control-plane part (default: "+controlPlaneConfigPath+", found from the working directory up)")
	f.BoolVar(&o.skipControlPlane, "skip-controlplane", false, "skip the control-plane part")
	f.BoolVar(&o.fixedPorts, "fixed-ports", false, "use the listener and endpoint ports written in the config instead of free ports")
	f.IntVar(&o.calls, "calls", 1000, "calls per method")
	f.IntVar(&o.concurrency, "concurrency", 8, "calls in flight at once")
	f.BoolVar(&o.verbose, "verbose", false, "print the proxies' and the controller's whole log to stderr (--log-level=debug)")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, o demoOptions) error {
	if o.calls < 1 || o.concurrency < 1 {
		return errors.New("demo: --calls and --concurrency must be at least 1")
	}
	if !o.skipControlPlane {
		if err := runControlPlaneDemo(ctx, out, o); err != nil {
			return err
		}
		fmt.Fprintln(out)
	}
	if err := runDubboDemo(ctx, out, o); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if err := runThriftDemo(ctx, out, o); err != nil {
		return err
	}
	fmt.Fprintln(out)
	return runRedisDemo(ctx, out, o)
}

// runDubboDemo is the demo's Dubbo part.
func runDubboDemo(ctx context.Context, out io.Writer, o demoOptions) error {
	start := time.Now()
	boot, source, err := loadDemoConfig(o.configFile)
	if err != nil {
		return err
	}
	l, err := demoListener(boot, "Dubbo", "dubbo", o.fixedPorts)
	if err != nil {
		return err
	}
	providers, err := startProviders(&boot.Resources, o.fixedPorts)
	defer func() {
		for _, p := range providers {
			p.Close()
		}
	}()
	if err != nil {
		return err
	}

	addr, stop, err := startDemoProxy(boot.Resources, l.name, source, o.verbose)
	if err != nil {
		return err
	}
	defer stop()
	c, err := dubbopeer.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()

	printSetup(out, source, l, addr, providers)
	if err := printSamples(ctx, out, c); err != nil {
		return err
	}
	counts, err := callMany(ctx, c, o)
	if err != nil {
		return err
	}
	printTable(out, l, providers, counts, o)
	printFailures(ctx, out, c, l)
	fmt.Fprintf(out, "\nDone: %d calls in %s. Ask the same question of any config with:\n", o.calls*len(demoMethods)+len(demoMethods)+2, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(out, "  rosettactl route %s --attr interface=%s --attr method=sayGoodbye\n", dubboexample.DemoConfigPath, greeter.Interface)
	return nil
}

// loadDemoConfig reads the Dubbo part's config through pkg/config, as the
// proxy does.
func loadDemoConfig(file string) (*config.Bootstrap, string, error) {
	return loadConfig(file, dubboexample.DemoConfig, dubboexample.DemoConfigPath)
}

// loadConfig reads file, or the built-in copy of the file at path.
func loadConfig(file string, builtIn []byte, path string) (*config.Bootstrap, string, error) {
	if file != "" {
		b, err := config.LoadFile(file)
		return b, file, err
	}
	b, err := config.Parse(builtIn)
	if err != nil {
		return nil, "", fmt.Errorf("demo: built-in %s: %w", path, err)
	}
	return b, path + " (built-in copy)", nil
}

// logFlags are rosettactl's --log-level and --log-format; demoLog is the
// logger they give, warnings and errors only by default.
var (
	logFlags cli.Log
	demoLog  = slog.New(slog.DiscardHandler)
)

// demoLogger is what the demo's proxies and controller log to: --verbose
// shows everything.
func demoLogger(verbose bool) *slog.Logger {
	if verbose {
		l := logFlags
		l.Level = "debug"
		if log, err := l.Logger(os.Stderr); err == nil {
			return log
		}
	}
	return demoLog
}

func setPort(sa *corev3.SocketAddress, port int) {
	if sa != nil {
		sa.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(port)}
	}
}

// demoProvider is a provider the demo started for a cluster endpoint.
type demoProvider struct {
	*dubbopeer.Provider
	cluster string
}

// startProviders starts a Dubbo provider for every endpoint of every
// cluster (see startPeers).
func startProviders(res *config.Resources, fixed bool) ([]*demoProvider, error) {
	var out []*demoProvider
	err := startPeers(res, fixed, func(listen, name, cluster string) (string, error) {
		dp, err := dubbopeer.Serve(listen, name, greeterHandler(name))
		if err != nil {
			return "", fmt.Errorf("demo: provider for cluster %s: %w", cluster, err)
		}
		out = append(out, &demoProvider{Provider: dp, cluster: cluster})
		return dp.Addr(), nil
	})
	return out, err
}

// startPeers starts a server for every endpoint of every cluster, named
// after its cluster ("-1", "-2" added when it has several), and points the
// endpoint at it. Endpoints with the same address share one server. start
// listens on listen (a free port, or the endpoint's own with fixed) and
// returns the server's address.
func startPeers(res *config.Resources, fixed bool, start func(listen, name, cluster string) (string, error)) error {
	started := map[string]string{} // endpoint address as written -> server address
	for _, cl := range res.Clusters {
		cla := cl.GetLoadAssignment()
		if cla == nil {
			cla = findAssignment(res.Endpoints, cl.GetName(), cl.GetEdsClusterConfig().GetServiceName())
		}
		var sas []*corev3.SocketAddress
		for _, le := range cla.GetEndpoints() {
			for _, ep := range le.GetLbEndpoints() {
				if sa := ep.GetEndpoint().GetAddress().GetSocketAddress(); sa != nil {
					sas = append(sas, sa)
				}
			}
		}
		for i, sa := range sas {
			orig := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
			addr, ok := started[orig]
			if !ok {
				name := cl.GetName()
				if len(sas) > 1 {
					name = fmt.Sprintf("%s-%d", name, i+1)
				}
				listen := "127.0.0.1:0"
				if fixed {
					listen = orig
				}
				var err error
				if addr, err = start(listen, name, cl.GetName()); err != nil {
					return err
				}
				started[orig] = addr
			}
			_, port, _ := net.SplitHostPort(addr)
			n, _ := strconv.Atoi(port)
			sa.Address = "127.0.0.1"
			setPort(sa, n)
		}
	}
	if len(started) == 0 {
		return errors.New("demo: the config has no cluster endpoints to run servers for")
	}
	return nil
}

func findAssignment(cla []*endpointv3.ClusterLoadAssignment, names ...string) *endpointv3.ClusterLoadAssignment {
	for _, a := range cla {
		for _, n := range names {
			if n != "" && a.GetClusterName() == n {
				return a
			}
		}
	}
	return nil
}

// greeterHandler is the demo's service; every answer names its provider.
func greeterHandler(name string) dubbopeer.Handler {
	return func(ctx context.Context, req *dubbopeer.Request) (any, error) {
		who := "stranger"
		if len(req.Args) > 0 {
			who = fmt.Sprint(req.Args[0])
		}
		switch req.Method {
		case "sayHello":
			return fmt.Sprintf("Hello, %s! (%s)", who, name), nil
		case "sayGoodbye":
			return fmt.Sprintf("Goodbye, %s! (%s)", who, name), nil
		case "fail":
			return nil, fmt.Errorf("%s: fail always throws", name)
		}
		return fmt.Sprintf("%s answers %s(%s)", name, req.Method, who), nil
	}
}

func printSetup(out io.Writer, source string, l *rosettaListener, addr string, providers []*demoProvider) {
	fmt.Fprintln(out, "Rosetta demo: a Dubbo consumer calls two provider versions through a Rosetta proxy")
	printProxy(out, source, l, addr)
	printPeers(out, "providers", providers, func(p *demoProvider) (string, string, string) { return p.Name(), p.Addr(), p.cluster })
}

// demoListener is the listener a demo part runs, which must use codec;
// unless ports are fixed, the config's listeners move to free ports.
func demoListener(boot *config.Bootstrap, part, codec string, fixedPorts bool) (*rosettaListener, error) {
	l, err := findListener(boot.Resources, "")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if c := l.filter.GetCodec(); c != codec {
		return nil, fmt.Errorf("demo: listener %q uses codec %q; the %s part speaks %s", l.name, c, part, codec)
	}
	if !fixedPorts {
		for _, li := range boot.Listeners {
			setPort(li.GetAddress().GetSocketAddress(), 0)
		}
	}
	return l, nil
}

// printProxy prints the config and proxy lines of a demo part's setup.
func printProxy(out io.Writer, source string, l *rosettaListener, addr string) {
	fmt.Fprintf(out, "  config     %s\n", source)
	fmt.Fprintf(out, "  proxy      listener %q on %s (codec %s, routes %q)\n", l.name, addr, l.filter.GetCodec(), l.table.Name)
}

// printPeers lists the servers a demo part started under label; describe
// gives a server's name, address and cluster.
func printPeers[P any](out io.Writer, label string, peers []P, describe func(P) (name, addr, cluster string)) {
	for i, p := range peers {
		if i > 0 {
			label = ""
		}
		name, addr, cluster := describe(p)
		fmt.Fprintf(out, "  %-9s  %s on %s (cluster %s)\n", label, name, addr, cluster)
	}
}

func printSamples(ctx context.Context, out io.Writer, c *dubbopeer.Consumer) error {
	fmt.Fprintln(out, "\nOne call of each method:")
	for _, m := range demoMethods {
		v, _, err := c.Call(ctx, greeter, m, []any{"rosetta"}, nil)
		if err != nil {
			return fmt.Errorf("demo: %s: %w", m, err)
		}
		fmt.Fprintf(out, "  %s.%s(\"rosetta\") -> %q\n", greeter.Interface, m, v)
	}
	return nil
}

// tally counts, per method, the answers of each provider and the errors.
type tally map[string]map[string]int

// callMany makes o.calls calls of each method, o.concurrency at a time.
func callMany(ctx context.Context, c *dubbopeer.Consumer, o demoOptions) (tally, error) {
	return tallyCalls(ctx, demoMethods, o.calls, o.concurrency, func(worker int, m string) (string, error) {
		_, atts, err := c.Call(ctx, greeter, m, []any{"rosetta"}, nil)
		return dubbopeer.ProviderName(atts), err
	})
}

// tallyCalls makes calls of each method through call from workers
// goroutines, and counts the answers by who gave them ("errors" for
// failures).
func tallyCalls(ctx context.Context, methods []string, calls, workers int, call func(worker int, method string) (string, error)) (tally, error) {
	counts := tally{}
	for _, m := range methods {
		counts[m] = map[string]int{}
	}
	var mu sync.Mutex
	var next atomic.Int64
	total := int64(calls * len(methods))
	var wg sync.WaitGroup
	var firstErr error
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1) - 1
				if n >= total || ctx.Err() != nil {
					return
				}
				m := methods[n%int64(len(methods))]
				who, err := call(w, m)
				mu.Lock()
				if err != nil {
					who = "errors"
					if firstErr == nil {
						firstErr = err
					}
				}
				counts[m][who]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("demo: %w (first call error: %v)", ctx.Err(), firstErr)
	}
	return counts, nil
}

// startDemoProxy applies res to a new in-process proxy and returns the
// address of its listener and a function that shuts it down.
func startDemoProxy(res config.Resources, listener, source string, verbose bool) (string, func(), error) {
	px := proxy.New(demoLogger(verbose))
	if err := px.Apply(res); err != nil {
		return "", nil, fmt.Errorf("demo: %s: %w", source, err)
	}
	addr, _ := px.Addr(listener)
	return addr, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = px.Shutdown(sctx)
	}, nil
}

func printTable(out io.Writer, l *rosettaListener, providers []*demoProvider, counts tally, o demoOptions) {
	fmt.Fprintf(out, "\n%d calls per method through the proxy (%d in flight), by the provider that answered:\n\n", o.calls, o.concurrency)
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	header := "METHOD\tROUTE\tCONFIGURED"
	for _, p := range providers {
		header += "\t" + p.Name()
	}
	fmt.Fprintln(tw, header+"\tERRORS")
	for _, m := range demoMethods {
		route, configured := routeFor(l, greeter, m)
		row := fmt.Sprintf("%s\t%s\t%s", m, route, configured)
		for _, p := range providers {
			n := counts[m][p.Name()]
			row += fmt.Sprintf("\t%d (%s)", n, percent(n, o.calls))
		}
		fmt.Fprintln(tw, row+fmt.Sprintf("\t%d", counts[m]["errors"]))
	}
	tw.Flush()
}

// routeFor asks the listener's routes, as the proxy would, where a call goes.
func routeFor(l *rosettaListener, svc dubbopeer.Service, method string) (route, configured string) {
	return routeForAttrs(l, codec.Map{"interface": svc.Interface, "method": method, "version": svc.Version})
}

func printFailures(ctx context.Context, out io.Writer, c *dubbopeer.Consumer, l *rosettaListener) {
	fmt.Fprintln(out, "\nWhen a call fails:")
	route, _ := routeFor(l, unknownService, "sayHello")
	_, _, err := c.Call(ctx, unknownService, "sayHello", []any{"rosetta"}, nil)
	fmt.Fprintf(out, "  %s.sayHello  (route: %s, so the proxy answers itself)\n    -> %s\n", unknownService.Interface, route, describeErr(err))
	route, _ = routeFor(l, greeter, "fail")
	_, _, err = c.Call(ctx, greeter, "fail", nil, nil)
	fmt.Fprintf(out, "  %s.fail  (route: %s)\n    -> %s\n", greeter.Interface, route, describeErr(err))
}

func describeErr(err error) string {
	var se *dubbopeer.StatusError
	var ex *dubbopeer.Exception
	switch {
	case err == nil:
		return "no error (unexpected)"
	case errors.As(err, &se):
		return fmt.Sprintf("Dubbo status %d (%s): %q", se.Status, dubbopeer.StatusName(se.Status), se.Message)
	case errors.As(err, &ex):
		return fmt.Sprintf("service exception from the provider: %q", ex.Message)
	}
	return err.Error()
}
