package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/router"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Check proxy config files, or controller config folders, without opening any port",
		Long: `Validate parses each file with the proxy's config loader and runs the proxy's own
checks (listeners, codecs and their options, routes, clusters, endpoints). It binds
nothing. It also warns about routes that name a cluster the file does not define:
the proxy accepts those (over xDS the cluster may come later) but answers their
calls with "no upstream".

A folder is read as the controller's folder mode reads it (rosetta-controller
--config-dir): it is invalid when a document does not parse, has a kind or API
group the controller does not know (a misspelt kind, an unknown group) or a field
its kind does not have, or when a MetaRouter, Redis object or authorization policy
would not be accepted. Objects of other APIs (Deployments and the like) are
listed as notes.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := 0
			for _, f := range args {
				if err := validatePath(cmd.OutOrStdout(), f); err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: invalid: %v\n", f, err)
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d files invalid", failed, len(args))
			}
			return nil
		},
	}
}

// validatePath validates a folder as the controller's config, and a file
// as the proxy's.
func validatePath(out io.Writer, path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return validateDir(out, path)
	}
	return validateFile(out, path)
}

func validateFile(out io.Writer, path string) error {
	boot, err := config.LoadFile(path)
	if err != nil {
		return err
	}
	if err := proxy.Validate(boot.Resources); err != nil {
		return err
	}
	r := boot.Resources
	fmt.Fprintf(out, "%s: ok (%s, %s, %s, %s)\n", path, plural(len(r.Listeners), "listener"),
		plural(len(r.Routes), "route configuration"), plural(len(r.Clusters), "cluster"), plural(len(r.Endpoints), "endpoint set"))
	for _, w := range undefinedClusters(r) {
		fmt.Fprintf(out, "%s: warning: %s\n", path, w)
	}
	return nil
}

// undefinedClusters lists the routes that send to a cluster the resources
// do not define.
func undefinedClusters(r config.Resources) []string {
	defined := map[string]bool{}
	for _, c := range r.Clusters {
		defined[c.GetName()] = true
	}
	var out []string
	check := func(t *router.Table) {
		for _, rt := range t.Routes {
			for _, c := range rt.Action.Clusters() {
				if !defined[c] {
					out = append(out, fmt.Sprintf("route %q of %q sends to cluster %q, which is not defined", rt.Name, t.Name, c))
				}
			}
		}
	}
	for _, rc := range r.Routes {
		if t, err := router.Compile(rc); err == nil {
			check(t)
		}
	}
	for _, l := range r.Listeners {
		if mp, err := metaProtocolFilter(l); err == nil && mp.GetRouteConfig() != nil {
			if t, err := router.Compile(mp.GetRouteConfig()); err == nil {
				check(t)
			}
		}
	}
	return out
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
