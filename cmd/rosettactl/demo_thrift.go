package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/protocols/thrift/thriftpeer"
)

// thriftDemoConfig is a copy of examples/thrift/demo.yaml (a test keeps the
// two equal): go:embed cannot reach outside this directory.
//
//go:embed thrift_demo.yaml
var thriftDemoConfig []byte

const thriftDemoConfigPath = "examples/thrift/demo.yaml"

// thriftMethods are the Echo methods the Thrift part calls; its config
// routes on them.
var thriftMethods = []string{"ping", "echo"}

// demoServer is an Echo server the demo started for a cluster endpoint.
type demoServer struct {
	*thriftpeer.Server
	cluster string
}

// runThriftDemo is the demo's Thrift part: Apache Thrift's generated Go
// client calls two generated Go servers through the proxy.
func runThriftDemo(ctx context.Context, out io.Writer, o demoOptions) error {
	start := time.Now()
	boot, source, err := loadConfig(o.thriftFile, thriftDemoConfig, thriftDemoConfigPath)
	if err != nil {
		return err
	}
	l, err := demoListener(boot, "Thrift", "thrift", o.fixedPorts)
	if err != nil {
		return err
	}
	format, err := thriftFormat(l.filter.GetCodecOptions())
	if err != nil {
		return fmt.Errorf("demo: listener %q: %w", l.name, err)
	}
	var servers []*demoServer
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	err = startPeers(&boot.Resources, o.fixedPorts, func(listen, name, cluster string) (string, error) {
		s, err := thriftpeer.Serve(listen, name, format)
		if err != nil {
			return "", fmt.Errorf("demo: server for cluster %s: %w", cluster, err)
		}
		servers = append(servers, &demoServer{Server: s, cluster: cluster})
		return s.Addr(), nil
	})
	if err != nil {
		return err
	}

	addr, stop, err := startDemoProxy(boot.Resources, l.name, source, o.verbose)
	if err != nil {
		return err
	}
	defer stop()
	// A Thrift connection carries one call at a time: one client per caller.
	clients := make([]*thriftpeer.Client, 0, o.concurrency)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range o.concurrency {
		c, err := thriftpeer.Dial(addr, format)
		if err != nil {
			return err
		}
		clients = append(clients, c)
	}

	printThriftSetup(out, source, l, addr, format, servers)
	if err := printThriftSamples(ctx, out, clients[0]); err != nil {
		return err
	}
	counts, err := callThriftMany(ctx, clients, o.calls)
	if err != nil {
		return err
	}
	printThriftTable(out, l, servers, counts, o)
	printThriftFailures(ctx, out, clients[0], l)
	fmt.Fprintf(out, "\nDone: %d calls in %s. Ask the same question of any config with:\n", o.calls*len(thriftMethods)+len(thriftMethods)+2, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(out, "  rosettactl route %s --attr method=echo\n", thriftDemoConfigPath)
	return nil
}

// thriftFormat is the format the codec options pin; the demo's peers need
// one ("auto" means framed binary, what most servers speak).
func thriftFormat(opts map[string]string) (thriftpeer.Format, error) {
	var f thriftpeer.Format
	switch t := opts["transport"]; t {
	case "", "auto", "framed":
	case "unframed":
		f.Transport = "buffered"
	case "header":
		f.Transport = "header"
	default:
		return f, fmt.Errorf("codec option transport %q", t)
	}
	switch p := opts["protocol"]; p {
	case "", "auto", "binary":
	case "compact":
		f.Protocol = "compact"
	default:
		return f, fmt.Errorf("codec option protocol %q", p)
	}
	return f, nil
}

func printThriftSetup(out io.Writer, source string, l *rosettaListener, addr string, f thriftpeer.Format, servers []*demoServer) {
	fmt.Fprintf(out, "Rosetta demo, Thrift: Apache Thrift's generated Go client calls two Echo servers through the proxy (%s)\n", f)
	printProxy(out, source, l, addr)
	printPeers(out, "servers", servers, func(s *demoServer) (string, string, string) { return s.Name(), s.Addr(), s.cluster })
}

func printThriftSamples(ctx context.Context, out io.Writer, c *thriftpeer.Client) error {
	fmt.Fprintln(out, "\nOne call of each method:")
	v, err := c.Ping(ctx, "rosetta")
	if err != nil {
		return fmt.Errorf("demo: ping: %w", err)
	}
	fmt.Fprintf(out, "  Echo.ping(\"rosetta\") -> %q\n", v)
	v, _, err = c.Echo(ctx, "rosetta", nil)
	if err != nil {
		return fmt.Errorf("demo: echo: %w", err)
	}
	fmt.Fprintf(out, "  Echo.echo({text: \"rosetta\"}) -> {text: %q}\n", v)
	return nil
}

// callThriftMany makes calls calls of each method, each client in its own
// goroutine, and counts the answers by the server that gave them.
func callThriftMany(ctx context.Context, clients []*thriftpeer.Client, calls int) (tally, error) {
	return tallyCalls(ctx, thriftMethods, calls, len(clients), func(w int, m string) (string, error) {
		return callThrift(ctx, clients[w], m)
	})
}

func callThrift(ctx context.Context, c *thriftpeer.Client, method string) (string, error) {
	var answer string
	var err error
	switch method {
	case "ping":
		answer, err = c.Ping(ctx, "rosetta")
	case "echo":
		answer, _, err = c.Echo(ctx, "rosetta", nil)
	default:
		answer, err = c.Call(ctx, method, "rosetta")
	}
	return thriftpeer.Answerer(answer), err
}

func printThriftTable(out io.Writer, l *rosettaListener, servers []*demoServer, counts tally, o demoOptions) {
	fmt.Fprintf(out, "\n%d calls per method through the proxy (%d clients), by the server that answered:\n\n", o.calls, o.concurrency)
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	header := "METHOD\tROUTE\tCONFIGURED"
	for _, s := range servers {
		header += "\t" + s.Name()
	}
	fmt.Fprintln(tw, header+"\tERRORS")
	for _, m := range thriftMethods {
		route, configured := routeForAttrs(l, codec.Map{"method": m})
		row := fmt.Sprintf("%s\t%s\t%s", m, route, configured)
		for _, s := range servers {
			n := counts[m][s.Name()]
			row += fmt.Sprintf("\t%d (%s)", n, percent(n, o.calls))
		}
		fmt.Fprintln(tw, row+fmt.Sprintf("\t%d", counts[m]["errors"]))
	}
	tw.Flush()
}

// routeForAttrs asks the listener's routes, as the proxy would, where a
// request with attrs goes.
func routeForAttrs(l *rosettaListener, attrs codec.Map) (route, configured string) {
	r := l.table.Match(&codec.Message{Kind: codec.KindRequest, Attrs: attrs})
	if r == nil {
		return "(none)", "no route"
	}
	return r.Name, describeAction(&r.Action)
}

func printThriftFailures(ctx context.Context, out io.Writer, c *thriftpeer.Client, l *rosettaListener) {
	fmt.Fprintln(out, "\nWhen a call fails:")
	route, _ := routeForAttrs(l, codec.Map{"method": "hello"})
	_, err := c.Call(ctx, "hello", "rosetta")
	fmt.Fprintf(out, "  Echo.hello  (route: %s, so the proxy answers itself)\n    -> %s\n", route, describeThriftErr(err))
	route, _ = routeForAttrs(l, codec.Map{"method": "echo"})
	_, _, err = c.Echo(ctx, "oops", nil)
	fmt.Fprintf(out, "  Echo.echo({text: \"oops\"})  (route: %s)\n    -> %s\n", route, describeThriftErr(err))
}

func describeThriftErr(err error) string {
	var ex *thriftpeer.Exception
	if ae, ok := thriftpeer.ApplicationError(err); ok {
		return fmt.Sprintf("TApplicationException %s: %q", thriftpeer.ApplicationErrorName(ae.TypeId()), ae.Error())
	}
	switch {
	case err == nil:
		return "no error (unexpected)"
	case errors.As(err, &ex):
		return fmt.Sprintf("declared exception Oops from the server: %q", ex.Why)
	}
	return err.Error()
}
