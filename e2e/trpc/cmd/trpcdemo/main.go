// Command trpcdemo is the tRPC part of `make demo`: real trpc-go servers and
// a real trpc-go client, with a Rosetta proxy between them in this process,
// running the ready static config examples/trpc/proxy.yaml. It prints which
// server answered each function, and a call the server refuses.
//
// It lives in the e2e/trpc module because trpc-go is heavy; the main module
// never imports it. Run it from e2e/trpc:
//
//	go run ./cmd/trpcdemo
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/rosetta-mesh/rosetta/e2e/trpc/cmd/internal/greeter"
	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/router"
	_ "github.com/rosetta-mesh/rosetta/protocols/trpc" // registers the tRPC codec
)

// exampleConfig is the config the demo runs, relative to the repository root.
const exampleConfig = "examples/trpc/proxy.yaml"

// demoFuncs are the functions the demo calls; the config routes on them.
var demoFuncs = []string{greeter.SayHello, greeter.SayHi}

// missingFunc is a function of the Greeter that no server has.
const missingFunc = "/trpc.test.helloworld.Greeter/SayBye"

type options struct {
	configFile  string
	calls       int
	concurrency int
	verbose     bool
}

func main() {
	var o options
	flag.StringVar(&o.configFile, "config", "", "config file (default: "+exampleConfig+", looked for from the working directory up)")
	flag.IntVar(&o.calls, "calls", 1000, "calls per function")
	flag.IntVar(&o.concurrency, "concurrency", 8, "calls in flight at once")
	flag.BoolVar(&o.verbose, "verbose", false, "print the proxy's log to stderr")
	flag.Parse()
	greeter.Quiet()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "trpcdemo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, o options) error {
	if o.calls < 1 || o.concurrency < 1 {
		return errors.New("-calls and -concurrency must be at least 1")
	}
	start := time.Now()
	path, err := findConfig(o.configFile)
	if err != nil {
		return err
	}
	boot, err := config.LoadFile(path)
	if err != nil {
		return err
	}
	l, err := trpcListener(boot.Resources)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	setPort(l.GetAddress().GetSocketAddress(), 0)
	servers, err := startServers(&boot.Resources)
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	if err != nil {
		return err
	}
	routes, err := compileRoutes(boot.Resources, l)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}

	px := proxy.New(logger(o.verbose))
	if err := px.Apply(boot.Resources); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = px.Shutdown(sctx)
	}()
	addr, _ := px.Addr(l.GetName())
	c := greeter.Dial(addr)

	printSetup(out, path, l.GetName(), addr, routes.Name, servers)
	if err := printSamples(ctx, out, c); err != nil {
		return err
	}
	counts, err := callMany(ctx, c, o)
	if err != nil {
		return err
	}
	printTable(out, routes, servers, counts, o)
	printFailure(ctx, out, c, routes)
	fmt.Fprintf(out, "\nDone: %d calls in %s. Ask the same question of any config with:\n", o.calls*len(demoFuncs)+len(demoFuncs)+1, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(out, "  rosettactl route %s --attr func=%s\n", exampleConfig, greeter.SayHi)
	return nil
}

// findConfig returns file, or examples/trpc/proxy.yaml in the working
// directory or the nearest directory above it that has one (make demo runs
// this from e2e/trpc).
func findConfig(file string) (string, error) {
	if file != "" {
		return file, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, exampleConfig)
		if _, err := os.Stat(p); err == nil {
			if rel, err := filepath.Rel(mustGetwd(), p); err == nil {
				return rel, nil
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s in the working directory or above it: pass -config", exampleConfig)
		}
		dir = parent
	}
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}

func logger(verbose bool) *slog.Logger {
	if verbose {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// trpcListener returns the config's one listener, which must speak tRPC.
func trpcListener(res config.Resources) (*listenerv3.Listener, error) {
	if len(res.Listeners) != 1 {
		return nil, fmt.Errorf("the demo runs a config with one listener, not %d", len(res.Listeners))
	}
	l := res.Listeners[0]
	mp, err := filterOf(l)
	if err != nil {
		return nil, err
	}
	if mp.GetCodec() != "trpc" {
		return nil, fmt.Errorf("listener %q uses codec %q; the demo speaks trpc", l.GetName(), mp.GetCodec())
	}
	return l, nil
}

func filterOf(l *listenerv3.Listener) (*configv1alpha1.MetaProtocolProxy, error) {
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if f.GetName() == config.FilterName {
				mp := &configv1alpha1.MetaProtocolProxy{}
				if err := f.GetTypedConfig().UnmarshalTo(mp); err != nil {
					return nil, fmt.Errorf("listener %q: %w", l.GetName(), err)
				}
				return mp, nil
			}
		}
	}
	return nil, fmt.Errorf("listener %q has no %s filter", l.GetName(), config.FilterName)
}

// compileRoutes compiles the listener's routes as the proxy does, so the
// demo can say what each route is configured to do.
func compileRoutes(res config.Resources, l *listenerv3.Listener) (*router.Table, error) {
	mp, err := filterOf(l)
	if err != nil {
		return nil, err
	}
	rc := mp.GetRouteConfig()
	for _, r := range res.Routes {
		if rc == nil && r.GetName() == mp.GetRouteConfigName() {
			rc = r
		}
	}
	if rc == nil {
		return nil, fmt.Errorf("no route configuration named %q", mp.GetRouteConfigName())
	}
	return router.Compile(rc)
}

// demoServer is a server the demo started for a cluster endpoint.
type demoServer struct {
	*greeter.Server
	cluster string
}

// startServers starts a trpc-go server for every endpoint of every cluster,
// named after its cluster, on a free port, and points the endpoint at it.
func startServers(res *config.Resources) ([]*demoServer, error) {
	var out []*demoServer
	for _, cl := range res.Clusters {
		var sas []*corev3.SocketAddress
		for _, le := range cl.GetLoadAssignment().GetEndpoints() {
			for _, ep := range le.GetLbEndpoints() {
				if sa := ep.GetEndpoint().GetAddress().GetSocketAddress(); sa != nil {
					sas = append(sas, sa)
				}
			}
		}
		for i, sa := range sas {
			name := cl.GetName()
			if len(sas) > 1 {
				name = fmt.Sprintf("%s-%d", name, i+1)
			}
			s, err := greeter.Serve("127.0.0.1:0", name)
			if err != nil {
				return out, fmt.Errorf("server for cluster %s: %w", cl.GetName(), err)
			}
			out = append(out, &demoServer{Server: s, cluster: cl.GetName()})
			_, port, _ := net.SplitHostPort(s.Addr())
			n, _ := strconv.Atoi(port)
			sa.Address = "127.0.0.1"
			setPort(sa, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the config has no cluster endpoints to run servers for")
	}
	return out, nil
}

func setPort(sa *corev3.SocketAddress, port int) {
	if sa != nil {
		sa.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(port)}
	}
}

func printSetup(out io.Writer, path, listener, addr, routes string, servers []*demoServer) {
	fmt.Fprintln(out, "Rosetta demo, tRPC: trpc-go's client calls two trpc-go servers through the proxy")
	fmt.Fprintf(out, "  config     %s\n", path)
	fmt.Fprintf(out, "  proxy      listener %q on %s (codec trpc, routes %q)\n", listener, addr, routes)
	for i, s := range servers {
		label := ""
		if i == 0 {
			label = "servers"
		}
		fmt.Fprintf(out, "  %-9s  %s on %s (cluster %s)\n", label, s.Name(), s.Addr(), s.cluster)
	}
}

func printSamples(ctx context.Context, out io.Writer, c *greeter.Client) error {
	fmt.Fprintln(out, "\nOne call of each function:")
	for _, fn := range demoFuncs {
		v, err := c.Greet(ctx, fn, "rosetta")
		if err != nil {
			return fmt.Errorf("%s: %w", fn, err)
		}
		fmt.Fprintf(out, "  %s(\"rosetta\") -> %q\n", fn, v)
	}
	return nil
}

// tally counts, per function, the answers of each server and the errors.
type tally map[string]map[string]int

// callMany makes o.calls calls of each function, o.concurrency at a time,
// over the client's one multiplexed connection.
func callMany(ctx context.Context, c *greeter.Client, o options) (tally, error) {
	counts := tally{}
	for _, fn := range demoFuncs {
		counts[fn] = map[string]int{}
	}
	var mu sync.Mutex
	var next atomic.Int64
	total := int64(o.calls * len(demoFuncs))
	var firstErr error
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1) - 1
				if n >= total || ctx.Err() != nil {
					return
				}
				fn := demoFuncs[n%int64(len(demoFuncs))]
				v, err := c.Greet(ctx, fn, "rosetta")
				who := greeter.Answerer(v)
				mu.Lock()
				if err != nil {
					who = "errors"
					if firstErr == nil {
						firstErr = err
					}
				}
				counts[fn][who]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w (first call error: %v)", ctx.Err(), firstErr)
	}
	return counts, nil
}

func printTable(out io.Writer, routes *router.Table, servers []*demoServer, counts tally, o options) {
	fmt.Fprintf(out, "\n%d calls per function through the proxy (%d in flight), by the server that answered:\n\n", o.calls, o.concurrency)
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	header := "FUNC\tROUTE\tCONFIGURED"
	for _, s := range servers {
		header += "\t" + s.Name()
	}
	fmt.Fprintln(tw, header+"\tERRORS")
	for _, fn := range demoFuncs {
		route, configured := routeFor(routes, fn)
		row := fmt.Sprintf("%s\t%s\t%s", fn, route, configured)
		for _, s := range servers {
			n := counts[fn][s.Name()]
			row += fmt.Sprintf("\t%d (%s)", n, percent(n, o.calls))
		}
		fmt.Fprintln(tw, row+fmt.Sprintf("\t%d", counts[fn]["errors"]))
	}
	tw.Flush()
}

// routeFor asks the routes, as the proxy would, where a call of fn goes.
func routeFor(routes *router.Table, fn string) (route, configured string) {
	r := routes.Match(&codec.Message{Kind: codec.KindRequest, Attrs: codec.Map{"func": fn}})
	if r == nil {
		return "(none)", "no route"
	}
	if r.Action.Cluster != "" {
		return r.Name, r.Action.Cluster
	}
	var total uint32
	for _, w := range r.Action.Weighted {
		total += w.Weight
	}
	s := ""
	for i, w := range r.Action.Weighted {
		if i > 0 {
			s += " / "
		}
		s += w.Name + " " + percent(int(w.Weight), int(total))
	}
	return r.Name, s
}

func percent(n, total int) string {
	if total == 0 {
		return "0%"
	}
	p := 100 * float64(n) / float64(total)
	if p == float64(int(p)) {
		return fmt.Sprintf("%d%%", int(p))
	}
	return fmt.Sprintf("%.1f%%", p)
}

func printFailure(ctx context.Context, out io.Writer, c *greeter.Client, routes *router.Table) {
	fmt.Fprintln(out, "\nWhen a call fails:")
	route, configured := routeFor(routes, missingFunc)
	_, err := c.Greet(ctx, missingFunc, "rosetta")
	desc := "no error (unexpected)"
	if err != nil {
		desc = greeter.DescribeError(err)
	}
	fmt.Fprintf(out, "  %s  (route: %s, to %s, whose server has no such function)\n    -> %s\n", missingFunc, route, configured, desc)
}
