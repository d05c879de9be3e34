package config_test

import (
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	_ "github.com/rosetta-mesh/rosetta/protocols/dubbo"
)

func TestParseAuthority(t *testing.T) {
	for in, want := range map[string]string{
		"10.96.0.12:20880":          "10.96.0.12:20880",
		"[fd00::12]:20880":          "[fd00::12]:20880",
		"[::ffff:10.96.0.12]:20880": "10.96.0.12:20880",
		"greeter.demo:20880":        `"greeter.demo:20880" is not an ip:port destination`,
		"10.96.0.12":                `"10.96.0.12" is not an ip:port destination`,
		"10.96.0.12:0":              `"10.96.0.12:0": the port must not be 0`,
		"[fe80::1%eth0]:20880":      `"[fe80::1%eth0]:20880": an address with a zone is not a service destination`,
	} {
		ap, err := config.ParseAuthority(in)
		got := ap.String()
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("ParseAuthority(%q) = %s, want %s", in, got, want)
		}
	}
}

// hboneYAML has a listener without an address: the proxy serves it only
// through HBONE, to the destinations its filter's authorities list.
const hboneYAML = `
listeners:
- name: other
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: dubbo
        route_config: {name: other, routes: [{name: all, route: {cluster: other}}]}
        authorities: ["10.96.0.2:20880", "[fd00::2]:20880"]
clusters:
- name: other
  connect_timeout: 1s
  load_assignment: {cluster_name: other, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 20882}}}}]}]}
`

func TestListenerWithoutAnAddress(t *testing.T) {
	b, err := config.Parse([]byte(hboneYAML))
	if err != nil {
		t.Fatal(err)
	}
	if err := proxy.Validate(b.Resources); err != nil {
		t.Errorf("a listener reached only through HBONE is refused: %v", err)
	}
	// Without authorities it could not be reached at all.
	b, err = config.Parse([]byte(strings.Replace(hboneYAML, `authorities: ["10.96.0.2:20880", "[fd00::2]:20880"]`, "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	err = proxy.Validate(b.Resources)
	if err == nil || !strings.Contains(err.Error(), "address.socket_address: required") || !strings.Contains(err.Error(), "authorities") {
		t.Errorf("a listener with neither an address nor authorities: %v", err)
	}
}
