package dubbo

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
)

const collectorID = "spiffe://cluster.local/ns/istio-system/sa/otel-collector"

// A collector that takes only Istio mutual TLS gets the proxy's spans over
// it (--otlp-mtls): the proxy checks the collector's SPIFFE ID and presents
// its workload certificate. A plaintext exporter's spans are refused, and
// an exporter expecting another ID sends none.
func TestTracingOverIstioMutualTLS(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := write("root-cert.pem", ca.PEM())
	colCert, colKey := ca.Leaf(collectorID, time.Hour)
	col := startCollectorWith(t, "        tls:\n          cert_file: "+write("collector.pem", colCert)+
		"\n          key_file: "+write("collector-key.pem", colKey)+"\n          client_ca_file: "+root)
	proxyCert, proxyKey := ca.Leaf("spiffe://cluster.local/ns/default/sa/rosetta", time.Hour)
	w := identity.NewWorkload(&identity.FileSource{
		CertFile: write("cert-chain.pem", proxyCert), KeyFile: write("key.pem", proxyKey), RootFile: root,
	}, nil)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})

	call := func(opts ...tracing.Option) error {
		t.Helper()
		addr, export := tracedProxyWith(t, col, 100, opts, p.Addr())
		c := dubbokit.NewConsumer(t, addr, consumerConfig())
		if _, err := c.Call(context.Background(), dubbokit.MethodAttachment, "traceparent"); err != nil {
			t.Fatal(err)
		}
		return export(5 * time.Second)
	}
	mtls := func(ids ...string) tracing.Option {
		cfg, err := identity.GRPCClientConfig(w, ids, "", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return tracing.WithTLS(cfg)
	}
	if err := call(); err == nil {
		t.Error("plaintext export to a collector that takes only mutual TLS succeeded")
	}
	if err := call(mtls("spiffe://cluster.local/ns/x/sa/impostor")); err == nil {
		t.Error("export to a collector whose SPIFFE ID is not the expected one succeeded")
	}
	if err := call(mtls(collectorID)); err != nil {
		t.Fatalf("export over mutual TLS: %v", err)
	}
	if spans := col.waitSpans(t, 2); len(spans) != 2 || spans[0].TraceID != spans[1].TraceID {
		t.Fatalf("the collector holds %d spans, want the 2 of the one trace sent over mutual TLS: %+v", len(spans), spans)
	}
}
