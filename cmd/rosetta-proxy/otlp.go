package main

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/spf13/pflag"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
)

// otlpOptions are where the spans of traced listeners go and how.
type otlpOptions struct {
	// endpoint is the OTLP/gRPC receiver; "": no spans.
	endpoint string
	service  string
	// mtls is Istio mutual TLS with the workload identity; collectorIDs
	// are the SPIFFE IDs the collector may have, k,k.
	mtls         bool
	collectorIDs string
	// caFile and serverName: TLS to a collector with a certificate of its
	// own CA, as for any TLS server.
	caFile, serverName string
}

func (o *otlpOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.endpoint, "otlp-endpoint", "", "send the spans of listeners with tracing config to this OpenTelemetry OTLP/gRPC receiver (host:port), e.g. otel-collector.istio-system:4317 (empty: no spans); plaintext unless --otlp-mtls or --otlp-ca-file")
	fs.StringVar(&o.service, "trace-service-name", "rosetta-proxy", "the service.name of the proxy's spans (with --otlp-endpoint)")
	fs.BoolVar(&o.mtls, "otlp-mtls", false, "export spans over Istio mutual TLS with the workload identity (--identity); the collector's certificate must be a mesh one, unless --otlp-ca-file is given (then the workload certificate is only presented)")
	fs.StringVar(&o.collectorIDs, "otlp-collector-id", "", "SPIFFE IDs the collector's certificate may have, comma-separated (with --otlp-mtls; default: any identity of the proxy's trust domain)")
	fs.StringVar(&o.caFile, "otlp-ca-file", "", "PEM roots that verify the collector's serving certificate by DNS name or IP (turns on TLS to the collector)")
	fs.StringVar(&o.serverName, "otlp-server-name", "", "the name the collector's serving certificate must have (with --otlp-ca-file; default: the host of --otlp-endpoint)")
}

// start returns the tracer, nil without an endpoint; id is the workload
// identity, nil without --identity.
func (o *otlpOptions) start(ctx context.Context, id *identity.Workload) (*tracing.Tracer, error) {
	if err := o.check(id != nil); err != nil {
		return nil, err
	}
	if o.endpoint == "" {
		return nil, nil
	}
	var opts []tracing.Option
	if o.mtls || o.caFile != "" {
		name := o.serverName
		if name == "" {
			name, _, _ = net.SplitHostPort(o.endpoint)
		}
		var w *identity.Workload
		if o.mtls {
			w = id
		}
		var ids []string
		if o.collectorIDs != "" {
			ids = strings.Split(o.collectorIDs, ",")
		}
		cfg, err := identity.GRPCClientConfig(w, ids, o.caFile, name)
		if err != nil {
			return nil, err
		}
		opts = append(opts, tracing.WithTLS(cfg))
	}
	return tracing.New(ctx, o.endpoint, o.service, opts...)
}

// check refuses flags that would not do what they say.
func (o *otlpOptions) check(haveIdentity bool) error {
	tls := o.mtls || o.caFile != "" || o.collectorIDs != "" || o.serverName != ""
	switch {
	case tls && o.endpoint == "":
		return errors.New("--otlp-mtls, --otlp-ca-file, --otlp-collector-id and --otlp-server-name need --otlp-endpoint")
	case o.mtls && !haveIdentity:
		return errors.New("--otlp-mtls needs --identity")
	case o.collectorIDs != "" && (!o.mtls || o.caFile != ""):
		return errors.New("--otlp-collector-id checks a mesh certificate: it needs --otlp-mtls and no --otlp-ca-file")
	case o.serverName != "" && o.caFile == "":
		return errors.New("--otlp-server-name checks a plain server certificate: it needs --otlp-ca-file")
	}
	return nil
}
