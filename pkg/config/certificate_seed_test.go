package config_test

import (
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

// TestGatewayTLSSeed: the fuzz seed with a listener's own certificate is a
// config the proxy accepts, so the fuzzer starts from the accepting path;
// without its CA secret it is refused, naming the field and the secret.
func TestGatewayTLSSeed(t *testing.T) {
	b, err := config.LoadFile("testdata/gateway-tls-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := proxy.Validate(b.Resources); err != nil {
		t.Fatalf("the seed is refused: %v", err)
	}
	b.Secrets = b.Secrets[:1]
	err = proxy.Validate(b.Resources)
	if want := `listeners[0] (edge): filter_chains[0].transport_socket: common_tls_context.validation_context_sds_secret_config.name: no secret named "kubernetes://edge/edge-cert-cacert"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("without the CA secret: %v, want %q", err, want)
	}
}
