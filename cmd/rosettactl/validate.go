package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/router"
)

// finding is one line of validate's report.
type finding struct {
	Path string `json:"path"`
	// Level is ok, invalid, rejected, warning or note.
	Level   string `json:"level"`
	Message string `json:"message"`
}

// report collects what validate finds, for any output format.
type report struct {
	Findings []finding `json:"findings"`
	Invalid  int       `json:"invalid"`
}

func (r *report) add(path, level, format string, args ...any) {
	r.Findings = append(r.Findings, finding{Path: path, Level: level, Message: fmt.Sprintf(format, args...)})
}

func (r *report) table(w io.Writer) error {
	for _, f := range r.Findings {
		if f.Level == "ok" {
			fmt.Fprintf(w, "%s: ok %s\n", f.Path, f.Message)
			continue
		}
		fmt.Fprintf(w, "%s: %s: %s\n", f.Path, f.Level, f.Message)
	}
	return nil
}

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Check proxy config files, Rosetta and Aeraki resources, or controller config folders, without opening any port",
		Long: `Validate parses each file with the proxy's config loader and runs the proxy's own
checks (listeners, codecs and their options, routes, clusters, endpoints). It binds
nothing. It also warns about routes that name a cluster the file does not define:
the proxy accepts those (over xDS the cluster may come later) but answers their
calls with "no upstream".

A folder, or a file of Kubernetes objects (MetaRouters, ApplicationProtocols,
RedisServices, RedisDestinations, of Rosetta's API groups or Aeraki's, and the
Istio objects they refer to), is read as the controller's folder mode reads it
(rosetta-controller --config-dir): it is invalid when a document does not parse,
has a kind or API group the controller does not know (a misspelt kind, an
unknown group) or a field its kind does not have, or when a MetaRouter, Redis
object or authorization policy would not be accepted (the messages the
controller puts in their status, with the field at fault). The config the
controller would then send a proxy in each MetaRouter's namespace is compiled as
the proxy compiles it, so what a proxy would refuse is caught too. Objects of
other APIs (Deployments and the like) are listed as notes.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r := &report{}
			for _, f := range args {
				if err := validatePath(r, f); err != nil {
					r.add(f, "invalid", "%v", err)
					r.Invalid++
				}
			}
			if err := printResult(cmd, r, r.table); err != nil {
				return err
			}
			if r.Invalid > 0 {
				return fmt.Errorf("%d of %d files invalid", r.Invalid, len(args))
			}
			return nil
		},
	}
}

// validatePath validates a folder, or a file of Kubernetes objects, as
// the controller's config, and any other file as the proxy's.
func validatePath(r *report, path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return validateDir(r, path)
	}
	if kubeObjects(path) {
		return validateDir(r, path)
	}
	return validateFile(r, path)
}

// kubeObjects says whether the file's first document is a Kubernetes
// object (it has apiVersion and kind); a proxy config has neither.
func kubeObjects(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var doc map[string]any
	if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096).Decode(&doc); err != nil {
		return false
	}
	_, api := doc["apiVersion"]
	_, kind := doc["kind"]
	return api && kind
}

func validateFile(rep *report, path string) error {
	boot, err := config.LoadFile(path)
	if err != nil {
		return err
	}
	if err := proxy.Validate(boot.Resources); err != nil {
		return err
	}
	r := boot.Resources
	rep.add(path, "ok", "(%s, %s, %s, %s)", plural(len(r.Listeners), "listener"),
		plural(len(r.Routes), "route configuration"), plural(len(r.Clusters), "cluster"), plural(len(r.Endpoints), "endpoint set"))
	for _, w := range undefinedClusters(r) {
		rep.add(path, "warning", "%s", w)
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
