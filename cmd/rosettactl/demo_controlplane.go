package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
)

// What the control-plane part expects of examples/controlplane/config: the
// greeter's port on the proxy, its two providers' ports (subsets v1 and
// v2), and the MetaRouter's file.
const (
	controlPlaneConfigPath = "examples/controlplane/config"
	cpHost                 = "greeter.demo.svc.cluster.local"
	cpListenerPort         = 20880
	cpV1Port               = 20881
	cpV2Port               = 20882
	cpRouterFile           = "metarouter.yaml"
	cpNamespace            = "demo"
	cpNodeID               = "demo"
)

// cpMethods are the calls the part makes: sayHello has its own route,
// sayBye takes the catch-all one.
var cpMethods = []string{"sayHello", "sayBye"}

// cpWait bounds each wait of the part (first config, following the edit):
// long enough for a busy 2-core machine, where a push took over 10 s.
const cpWait = 30 * time.Second

// runControlPlaneDemo is the demo's control-plane part: the controller in
// folder mode serves a proxy over xDS, and an edit of the MetaRouter file
// moves the calls.
func runControlPlaneDemo(ctx context.Context, out io.Writer, o demoOptions) error {
	src, err := controlPlaneSource(o.controlPlaneDir)
	if err != nil {
		return err
	}
	if src == "" {
		fmt.Fprintf(out, "Rosetta demo, control plane: skipped (%s not found here; run from the repository or pass --controlplane-config)\n", controlPlaneConfigPath)
		return nil
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	goRun := func(fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil && ctx.Err() == nil {
				errs <- err
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()

	providers := map[string]*dubbopeer.Provider{}
	defer func() {
		for _, p := range providers {
			p.Close()
		}
	}()
	ports := map[int]int{cpListenerPort: cpListenerPort, cpV1Port: cpV1Port, cpV2Port: cpV2Port}
	for name, port := range map[string]int{"v1": cpV1Port, "v2": cpV2Port} {
		listen := "127.0.0.1:0"
		if o.fixedPorts {
			listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
		p, err := dubbopeer.Serve(listen, name, greeterHandler(name))
		if err != nil {
			return fmt.Errorf("demo: provider %s: %w", name, err)
		}
		providers[name] = p
		ports[port] = portOf(p.Addr())
	}
	if !o.fixedPorts {
		if ports[cpListenerPort], err = freePort(); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "rosetta-demo-controlplane-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := copyControlPlaneConfig(src, dir, ports); err != nil {
		return err
	}

	log := demoLogger(o.verbose)
	xdsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: listen xds: %w", err)
	}
	srv := xds.NewServer(ctx, xds.Options{Logger: log})
	pipe := &controller.Pipeline{Push: srv.Update, Log: log}
	goRun(func() error { return srv.Serve(ctx, xdsLis) })
	goRun(func() error { return pipe.RunDir(ctx, dir) })

	px := proxy.New(log)
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = px.Shutdown(sctx)
	}()
	xo := client.Options{Address: xdsLis.Addr().String(), NodeID: cpNodeID, Namespace: cpNamespace, ListenAddress: "127.0.0.1", Logger: log}
	goRun(func() error { return client.Run(ctx, xo, px.Apply) })

	listener := controller.ListenerName(cpHost, uint32(ports[cpListenerPort]))
	var addr string
	if err := pollUntil(ctx, errs, "the proxy's listener "+listener, func() bool {
		var ok bool
		addr, ok = px.Addr(listener)
		return ok
	}); err != nil {
		return err
	}
	configured := time.Since(start)
	c, err := dubbopeer.Dial(addr)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer c.Close()

	fmt.Fprintln(out, "Rosetta demo, control plane: the controller serves a proxy over xDS from a folder of YAML")
	fmt.Fprintf(out, "  config      %s (copied to a temporary folder%s)\n", src, portNote(o.fixedPorts))
	fmt.Fprintf(out, "  controller  folder mode, xDS on %s\n", xdsLis.Addr())
	fmt.Fprintf(out, "  proxy       node %q, namespace %q: listener %s on %s, configured over xDS in %s\n", cpNodeID, cpNamespace, listener, addr, configured.Round(time.Millisecond))
	fmt.Fprintf(out, "  providers   v1 on %s, v2 on %s\n", providers["v1"].Addr(), providers["v2"].Addr())

	fmt.Fprintf(out, "\nRoutes as %s says (sayHello to v1, everything else to v2):\n", cpRouterFile)
	if err := printRouted(ctx, out, c); err != nil {
		return err
	}
	edited := time.Now()
	if err := swapSubsets(filepath.Join(dir, cpRouterFile)); err != nil {
		return err
	}
	want := map[string]string{"sayHello": "v2", "sayBye": "v1"}
	if err := pollUntil(ctx, errs, "the proxy to follow the edit", func() bool { return routedAs(ctx, c, want) }); err != nil {
		return err
	}
	took := time.Since(edited)
	fmt.Fprintf(out, "\nEdited %s (subsets v1 and v2 swapped: sayHello to v2, everything else to v1):\n", cpRouterFile)
	if err := printRouted(ctx, out, c); err != nil {
		return err
	}
	fmt.Fprintf(out, "  the proxy followed the edit in %d ms\n", took.Milliseconds())

	fmt.Fprintf(out, "\nDone in %s. The same by hand (providers on 127.0.0.1:%d and :%d, callers on :%d):\n", time.Since(start).Round(time.Millisecond), cpV1Port, cpV2Port, cpListenerPort)
	fmt.Fprintf(out, "  go run ./cmd/rosetta-controller --config-dir %s --xds-address 127.0.0.1:15010 --http-address 127.0.0.1:15014\n", controlPlaneConfigPath)
	fmt.Fprintf(out, "  go run ./cmd/rosetta-proxy --xds 127.0.0.1:15010 --node-id %s --namespace %s --listen-address 127.0.0.1\n", cpNodeID, cpNamespace)
	return nil
}

// controlPlaneSource is the folder the part copies: dir when given (it must
// exist), else examples/controlplane/config found from the working
// directory upwards, else "" (the part is skipped, saying so).
func controlPlaneSource(dir string) (string, error) {
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return "", fmt.Errorf("demo: --controlplane-config %s is not a folder", dir)
		}
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", nil
	}
	for d := wd; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, controlPlaneConfigPath)
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			if rel, err := filepath.Rel(wd, cand); err == nil {
				return rel, nil
			}
			return cand, nil
		}
		if filepath.Dir(d) == d {
			return "", nil
		}
	}
}

// copyControlPlaneConfig copies the YAML files of src to dst, replacing
// each port number of ports (as written) with its new value. Every port
// must occur, so a changed example fails here rather than in a timeout.
func copyControlPlaneConfig(src, dst string, ports map[int]int) error {
	files, err := filepath.Glob(filepath.Join(src, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("demo: no YAML files in %s", src)
	}
	var pairs []string
	for from, to := range ports {
		pairs = append(pairs, strconv.Itoa(from), strconv.Itoa(to))
	}
	// One pass, so a new port equal to another old one is not replaced twice.
	r := strings.NewReplacer(pairs...)
	seen := map[int]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		for from := range ports {
			if strings.Contains(string(b), strconv.Itoa(from)) {
				seen[from] = true
			}
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), []byte(r.Replace(string(b))), 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	for from := range ports {
		if !seen[from] {
			return fmt.Errorf("demo: %s does not mention port %d; the control-plane part expects the greeter on 20880 with providers on 20881 (v1) and 20882 (v2)", src, from)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, cpRouterFile)); err != nil {
		return fmt.Errorf("demo: %s has no %s", src, cpRouterFile)
	}
	return nil
}

// swapSubsets exchanges subsets v1 and v2 in the MetaRouter file the way an
// editor saves: a new file renamed over the old one, so the controller
// never reads a half-written file.
func swapSubsets(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	swapped := strings.NewReplacer("subset: v1", "subset: v2", "subset: v2", "subset: v1").Replace(string(b))
	if swapped == string(b) {
		return fmt.Errorf("demo: %s names no subset v1 or v2", path)
	}
	tmp := path + ".tmp" // not .yaml: the controller ignores it
	if err := os.WriteFile(tmp, []byte(swapped), 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// printRouted makes one call of each method and prints who answered.
func printRouted(ctx context.Context, out io.Writer, c *dubbopeer.Consumer) error {
	for _, m := range cpMethods {
		v, atts, err := c.Call(ctx, greeter, m, []any{"rosetta"}, nil)
		if err != nil {
			return fmt.Errorf("demo: %s: %w", m, err)
		}
		fmt.Fprintf(out, "  %-8s answered by %s: %q\n", m, dubbopeer.ProviderName(atts), v)
	}
	return nil
}

// routedAs reports whether one call of each method is answered by the
// provider want names.
func routedAs(ctx context.Context, c *dubbopeer.Consumer, want map[string]string) bool {
	for m, who := range want {
		_, atts, err := c.Call(ctx, greeter, m, []any{"rosetta"}, nil)
		if err != nil || dubbopeer.ProviderName(atts) != who {
			return false
		}
	}
	return true
}

// pollUntil checks cond every few milliseconds until it holds, failing on
// a background error, ctx's end, or after cpWait.
func pollUntil(ctx context.Context, errs <-chan error, what string, cond func() bool) error {
	deadline := time.Now().Add(cpWait)
	for !cond() {
		select {
		case err := <-errs:
			return fmt.Errorf("demo: waiting for %s: %w", what, err)
		case <-ctx.Done():
			return fmt.Errorf("demo: waiting for %s: %w", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s not seen within %s", what, cpWait)
		}
	}
	return nil
}

// freePort returns a loopback port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("demo: %w", err)
	}
	defer l.Close()
	return portOf(l.Addr().String()), nil
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func portNote(fixed bool) string {
	if fixed {
		return ""
	}
	return ", ports moved to free ones"
}
