package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

// explainOptions say where the answer comes from: a running proxy, a
// controller (the config it sends a node), or a file or folder.
type explainOptions struct {
	listener   string
	attrs      []string
	admin      string
	controller string
	node       string
	namespace  string
	timeout    time.Duration
}

func newExplainCmd() *cobra.Command {
	o := &explainOptions{}
	cmd := &cobra.Command{
		Use:     "explain [FILE|DIR] --attr key=value... [--listener NAME|PORT]",
		Aliases: []string{"route"},
		Short:   "Show which listener, route, cluster and endpoint a request takes, and why earlier routes did not match",
		Long: `Explain follows a request with the given attributes as the proxy routes it: the
first route whose conditions all hold wins. It prints every route tried with the
condition that failed and the value the request had, the route taken, and the
clusters it sends to with their share, load-balancing policy and endpoints (and
the endpoint itself when that does not depend on load: a single endpoint, or a
ring hash over the request's attributes).

The answer comes from one of:
  --admin ADDR               a running rosetta-proxy (its admin /explain): the
                             config in force, matched by the proxy's own router
  --controller ADDR --node ID  a running rosetta-controller (its debug address):
                             the config it sends that proxy
  FILE                       a proxy config file
  DIR                        a controller config folder (MetaRouters, Istio and
                             Rosetta YAML), translated as folder mode does for a
                             proxy in --namespace

Attributes are what the listener's codec exposes; for Dubbo: interface, method,
version, group and any attachment. "route" is another name for this command.`,
		Example: `  rosettactl explain examples/dubbo/demo.yaml --attr interface=org.example.Greeter --attr method=sayGoodbye
  rosettactl explain --admin 127.0.0.1:15000 --listener 20880 --attr method=sayHello
  rosettactl explain --controller 127.0.0.1:15015 --node demo --attr method=sayHello
  rosettactl explain examples/controlplane/config --namespace demo --attr method=sayHello`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := o.explain(args)
			if err != nil {
				return err
			}
			return printResult(cmd, e, func(w io.Writer) error { return explainTable(w, e) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listener, "listener", "", "listener name or port (may be left out when there is one listener)")
	f.StringArrayVar(&o.attrs, "attr", nil, "a request attribute as key=value (repeatable)")
	f.StringVar(&o.admin, "admin", "", "ask the running proxy at this admin address")
	f.StringVar(&o.controller, "controller", "", "ask the running controller at this debug address (with --node)")
	f.StringVar(&o.node, "node", "", "the proxy's node id, with --controller")
	f.StringVar(&o.namespace, "namespace", "default", "the proxy's namespace, with a DIR")
	f.DurationVar(&o.timeout, "timeout", 5*time.Second, "how long to wait for a proxy or controller")
	return cmd
}

func (o *explainOptions) explain(args []string) (*proxy.Explanation, error) {
	attrs, err := parseAttrs(o.attrs)
	if err != nil {
		return nil, err
	}
	sources := len(args)
	for _, s := range []string{o.admin, o.controller} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 {
		return nil, errors.New("explain: give one of FILE, DIR, --admin or --controller")
	}
	if (o.controller != "") != (o.node != "") {
		return nil, errors.New("explain: --controller and --node go together")
	}
	switch {
	case o.admin != "":
		return o.fromProxy(attrs)
	case o.controller != "":
		body, err := getAdmin(o.controller, "/debug/config_dump?node="+url.QueryEscape(o.node), o.timeout)
		if err != nil {
			return nil, fmt.Errorf("explain: %w", err)
		}
		b, err := config.Parse(body)
		if err != nil {
			return nil, fmt.Errorf("explain: the controller's config for %q: %w", o.node, err)
		}
		return explainResources(b.Resources, "the controller's config for "+o.node, o.listener, attrs)
	}
	res, err := o.fromPath(args[0])
	if err != nil {
		return nil, err
	}
	return explainResources(res, args[0], o.listener, attrs)
}

// fromProxy asks a running proxy, which answers with its own router.
func (o *explainOptions) fromProxy(attrs map[string]string) (*proxy.Explanation, error) {
	q := url.Values{}
	if o.listener != "" {
		q.Set("listener", o.listener)
	}
	for k, v := range attrs {
		q.Add("attr", k+"="+v)
	}
	body, err := getAdmin(o.admin, "/explain?"+q.Encode(), o.timeout)
	if err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	e := &proxy.Explanation{}
	if err := json.Unmarshal(body, e); err != nil {
		return nil, fmt.Errorf("explain: %s: %w", o.admin, err)
	}
	return e, nil
}

// fromPath reads a proxy config file, or translates a controller folder
// for a proxy in o.namespace.
func (o *explainOptions) fromPath(path string) (config.Resources, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		in, err := controller.LoadDir(path)
		if err != nil {
			return config.Resources{}, err
		}
		b := &controller.Builder{Options: controller.Options{Resolve: offlineResolve}}
		res := b.Build(in).Generate(&controller.Proxy{ID: "rosettactl", Namespace: o.namespace, Labels: map[string]string{}})
		return *res, nil
	}
	boot, err := config.LoadFile(path)
	if err != nil {
		return config.Resources{}, err
	}
	return boot.Resources, nil
}

// offlineResolve answers every name with itself: explain and validate
// look nothing up, and a name that does not resolve here may resolve
// where the controller runs.
func offlineResolve(_ context.Context, host string) ([]string, error) {
	return []string{host}, nil
}

func explainResources(res config.Resources, from, listener string, attrs map[string]string) (*proxy.Explanation, error) {
	e, err := proxy.ExplainResources(res, listener, attrs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return e, nil
}

func parseAttrs(kvs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--attr %q: want key=value", kv)
		}
		m[k] = v
	}
	return m, nil
}

// explainTable writes the explanation for people.
func explainTable(w io.Writer, e *proxy.Explanation) error {
	routes := "inline routes"
	if e.RouteConfig != "" {
		routes = fmt.Sprintf("route configuration %q", e.RouteConfig)
	}
	fmt.Fprintf(w, "listener %q (codec %s), %s\n", e.Listener, e.Codec, routes)
	fmt.Fprintln(w, "ROUTE\tRESULT")
	for _, v := range e.Routes {
		result := "matched"
		if !v.Matched {
			has := fmt.Sprintf("the request has %q", v.Got)
			if v.Absent {
				has = "the request has none"
			}
			result = fmt.Sprintf("no match: %s (%s)", v.Condition, has)
		}
		fmt.Fprintf(w, "%s (routes[%d])\t%s\n", v.Route, v.Index, result)
	}
	if e.Route == "" {
		fmt.Fprintln(w, "no route: the proxy answers the request itself with the codec's no-route error")
		return nil
	}
	fmt.Fprintf(w, "route %q\n", e.Route)
	fmt.Fprintln(w, "CLUSTER\tSHARE\tPOLICY\tENDPOINT\tENDPOINTS")
	row := func(kind string, c proxy.ClusterChoice) {
		eps := strings.Join(c.Endpoints, ", ")
		if c.Missing {
			eps = "(no such cluster: the proxy answers no upstream)"
		}
		fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t%s\n", kind, c.Name, formatPercent(c.Percent), orDash(c.Policy), orDash(c.Endpoint), orDash(eps))
	}
	for _, c := range e.Clusters {
		row("", c)
	}
	for _, c := range e.Mirrors {
		row("mirror to ", c)
	}
	if e.Timeout != "" {
		fmt.Fprintf(w, "timeout %s\n", e.Timeout)
	}
	for _, kv := range e.RequestMutation {
		fmt.Fprintf(w, "sets request attribute %s\n", kv)
	}
	return nil
}

// formatPercent writes 80 as "80%" and 12.5 as "12.5%".
func formatPercent(p float64) string {
	if p == float64(int(p)) {
		return fmt.Sprintf("%d%%", int(p))
	}
	return fmt.Sprintf("%.1f%%", p)
}
