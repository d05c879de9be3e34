package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

func newDumpCmd() *cobra.Command {
	var admin string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "dump",
		Short: "Print the configuration a running proxy holds (its /config_dump)",
		Long: `Dump reads a running proxy's /config_dump: as a table of its resources, or
whole with --output json (the proxy's own document) or yaml.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := getAdmin(admin, "/config_dump", timeout)
			if err != nil {
				return fmt.Errorf("dump: %w", err)
			}
			var doc any
			if err := json.Unmarshal(body, &doc); err != nil {
				return fmt.Errorf("dump: %s: not JSON: %w", admin, err)
			}
			return printResult(cmd, doc, func(w io.Writer) error { return dumpTable(w, body) })
		},
	}
	cmd.Flags().StringVar(&admin, "admin", "127.0.0.1:15000", "the proxy's admin address")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the proxy")
	return cmd
}

// dumpTable lists the resources of a config dump, a line each.
func dumpTable(w io.Writer, body []byte) error {
	b, err := config.Parse(body)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	fmt.Fprintln(w, "KIND\tNAME\tSUMMARY")
	for _, l := range b.Listeners {
		sa := l.GetAddress().GetSocketAddress()
		addr := "-"
		if sa != nil {
			addr = fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
		}
		codec, routes := "-", "-"
		if mp, err := metaProtocolFilter(l); err == nil {
			codec, routes = mp.GetCodec(), orDash(mp.GetRouteConfigName())
			if mp.GetRouteConfig() != nil {
				routes = "inline"
			}
		}
		fmt.Fprintf(w, "listener\t%s\t%s, codec %s, routes %s\n", l.GetName(), addr, codec, routes)
	}
	for _, rc := range b.Routes {
		var names []string
		for _, r := range rc.GetRoutes() {
			names = append(names, r.GetName())
		}
		fmt.Fprintf(w, "routes\t%s\t%s\n", rc.GetName(), strings.Join(names, ", "))
	}
	for _, c := range b.Clusters {
		fmt.Fprintf(w, "cluster\t%s\t%s, %s\n", c.GetName(), strings.ToLower(c.GetType().String()), c.GetLbPolicy())
	}
	for _, e := range b.Endpoints {
		var addrs []string
		for _, le := range e.GetEndpoints() {
			for _, lb := range le.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				addrs = append(addrs, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
			}
		}
		fmt.Fprintf(w, "endpoints\t%s\t%s\n", e.GetClusterName(), orDash(strings.Join(addrs, ", ")))
	}
	for _, s := range b.Secrets {
		fmt.Fprintf(w, "secret\t%s\t-\n", s.GetName())
	}
	return nil
}

// getAdmin reads path from an admin (or debug) HTTP address, "host:port"
// or a URL, and fails on any status but 200 with the server's message.
func getAdmin(admin, path string, timeout time.Duration) ([]byte, error) {
	url := strings.TrimSuffix(admin, "/") + path
	if !strings.Contains(admin, "://") {
		url = "http://" + url
	}
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	// These documents are small; the cap keeps a wrong address from
	// filling memory.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
