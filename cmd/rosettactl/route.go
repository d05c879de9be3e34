package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

func newRouteCmd() *cobra.Command {
	var listener string
	var attrs []string
	cmd := &cobra.Command{
		Use:   "route FILE --attr key=value...",
		Short: "Show which route a request with the given attributes takes, and where it can go",
		Long: `Route matches a request's attributes against a listener's routes exactly as the
proxy does (first matching route wins) and prints the route and the clusters it
sends to, with their weights. Attributes are what the listener's codec exposes;
for Dubbo: interface, method, version, group and any attachment.`,
		Example: `  rosettactl route examples/dubbo/demo.yaml --attr interface=org.example.Greeter --attr method=sayGoodbye`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := parseAttrs(attrs)
			if err != nil {
				return err
			}
			return explainRoute(cmd.OutOrStdout(), args[0], listener, m)
		},
	}
	cmd.Flags().StringVar(&listener, "listener", "", "listener name (may be left out when the file has one listener)")
	cmd.Flags().StringArrayVar(&attrs, "attr", nil, "a request attribute as key=value (repeatable)")
	return cmd
}

func parseAttrs(kvs []string) (codec.Map, error) {
	m := codec.Map{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--attr %q: want key=value", kv)
		}
		m[k] = v
	}
	return m, nil
}

func explainRoute(out io.Writer, path, listener string, attrs codec.Map) error {
	boot, err := config.LoadFile(path)
	if err != nil {
		return err
	}
	if err := proxy.Validate(boot.Resources); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	l, err := findListener(boot.Resources, listener)
	if err != nil {
		return err
	}
	routes := fmt.Sprintf("route configuration %q", l.routeName)
	if l.routeName == "" {
		routes = "inline route configuration"
	}
	fmt.Fprintf(out, "listener %q (codec %s), %s\n", l.name, l.filter.GetCodec(), routes)
	msg := &codec.Message{Kind: codec.KindRequest, Attrs: attrs}
	r := l.table.Match(msg)
	if r == nil {
		fmt.Fprintln(out, "no route: the proxy answers the request itself with the codec's no-route error")
		return nil
	}
	index := 0
	for i, c := range l.table.Routes {
		if c == r {
			index = i
		}
	}
	fmt.Fprintf(out, "route %q (routes[%d])\n", r.Name, index)
	a := &r.Action
	if a.Cluster != "" {
		fmt.Fprintf(out, "  cluster %s\n", a.Cluster)
	}
	var total int
	for _, w := range a.Weighted {
		total += int(w.Weight)
	}
	for _, w := range a.Weighted {
		fmt.Fprintf(out, "  cluster %s  weight %d  (%s)\n", w.Name, w.Weight, percent(int(w.Weight), total))
	}
	for _, m := range a.Mirrors {
		fmt.Fprintf(out, "  mirror to %s  (%g%%)\n", m.Cluster, m.Percent)
	}
	if a.Timeout > 0 {
		fmt.Fprintf(out, "  timeout %s\n", a.Timeout)
	}
	for _, kv := range a.RequestMutation {
		fmt.Fprintf(out, "  sets request attribute %s=%s\n", kv.Key, kv.Value)
	}
	return nil
}
