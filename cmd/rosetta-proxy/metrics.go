package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/rosetta-mesh/rosetta/pkg/observability"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

// metricsOptions choose what the proxy exports (docs/observability.md).
type metricsOptions struct {
	istio    bool
	reporter string
	opMax    int
	opNames  []string
}

func (o *metricsOptions) register(fs *pflag.FlagSet) {
	fs.BoolVar(&o.istio, "istio-metrics", true, "export Istio's standard metrics (istio_requests_total, istio_request_duration_milliseconds, ...) beside Rosetta's own")
	fs.StringVar(&o.reporter, "reporter", "", "the reporter label of Istio's metrics: waypoint, source or destination (default: waypoint, or source with --mode=sidecar)")
	fs.IntVar(&o.opMax, "max-operations", observability.DefaultOperationLimit.Max, "distinct operation names (Dubbo and Thrift methods, tRPC funcs, Redis commands) that get a series of their own in rosetta_operations_total, the first seen; the rest count as \"other\" (0: all)")
	fs.StringSliceVar(&o.opNames, "operation-names", nil, "the only operation names that get a series of their own in rosetta_operations_total (comma-separated; overrides --max-operations)")
}

// reporterFor is the reporter label for --reporter and --mode.
func reporterFor(flag, mode string) (string, error) {
	switch flag {
	case observability.ReporterWaypoint, observability.ReporterSource, observability.ReporterDestination:
		return flag, nil
	case "":
		if mode == "sidecar" {
			return observability.ReporterSource, nil
		}
		return observability.ReporterWaypoint, nil
	}
	return "", fmt.Errorf("--reporter: %q is not waypoint, source or destination", flag)
}

// apply sets up p's metrics as the options say.
func (o *metricsOptions) apply(p *proxy.Proxy, mode string) error {
	r, err := reporterFor(o.reporter, mode)
	if err != nil {
		return err
	}
	if o.opMax < 0 {
		return fmt.Errorf("--max-operations: %d is negative", o.opMax)
	}
	for i, n := range o.opNames {
		if strings.TrimSpace(n) == "" {
			return fmt.Errorf("--operation-names: name %d is empty", i+1)
		}
	}
	p.SetReporter(r)
	if !o.istio {
		p.Metrics().DisableIstio()
	}
	p.Metrics().SetOperationLimit(observability.OperationLimit{Max: o.opMax, Names: o.opNames})
	return nil
}
