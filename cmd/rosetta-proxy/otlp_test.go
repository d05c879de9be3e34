package main

import (
	"context"
	"strings"
	"testing"
)

func TestOTLPFlagsThatWouldNotDoWhatTheySay(t *testing.T) {
	for _, c := range []struct {
		name     string
		o        otlpOptions
		identity bool
		err      string
	}{
		{"plaintext", otlpOptions{endpoint: "c:4317"}, false, ""},
		{"mtls", otlpOptions{endpoint: "c:4317", mtls: true, collectorIDs: "spiffe://td/ns/x/sa/c"}, true, ""},
		{"own CA", otlpOptions{endpoint: "c:4317", caFile: "ca.pem", serverName: "c"}, false, ""},
		{"mtls without identity", otlpOptions{endpoint: "c:4317", mtls: true}, false, "--otlp-mtls needs --identity"},
		{"TLS without endpoint", otlpOptions{caFile: "ca.pem"}, false, "need --otlp-endpoint"},
		{"IDs without mtls", otlpOptions{endpoint: "c:4317", collectorIDs: "spiffe://td/ns/x/sa/c"}, true, "--otlp-collector-id"},
		{"IDs with a CA file", otlpOptions{endpoint: "c:4317", mtls: true, caFile: "ca.pem", collectorIDs: "spiffe://td/ns/x/sa/c"}, true, "--otlp-collector-id"},
		{"server name without CA file", otlpOptions{endpoint: "c:4317", serverName: "c"}, false, "--otlp-server-name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.o.check(c.identity)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("check: %v, want %q", err, c.err)
			}
		})
	}
}

func TestOTLPCAFileIsRead(t *testing.T) {
	o := otlpOptions{endpoint: "127.0.0.1:4317", caFile: "/nonexistent/ca.pem"}
	if _, err := o.start(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Fatalf("start with a missing CA file: %v", err)
	}
}
