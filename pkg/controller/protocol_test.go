package controller

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

func TestDetectProtocol(t *testing.T) {
	protos := newProtocols([]*v1alpha1.ApplicationProtocol{{Spec: v1alpha1.ApplicationProtocolSpec{Protocol: "my-proto", Codec: "mine"}}})
	cases := []struct{ app, name, want string }{
		{"", "tcp-dubbo-greeter", "dubbo"},
		{"", "dubbo", "dubbo"},
		{"", "dubbo-x", "dubbo"},
		{"", "tcp-metaprotocol-dubbo-hello", "dubbo"},
		{"", "tcp-metaprotocol-thrift", "thrift"},
		{"", "tcp-metaprotocol-my-proto-x", "mine"},
		{"", "my-proto", ""}, // "my" is the first word; Aeraki's form is needed for dashed names
		{"dubbo", "http", "dubbo"},
		{"rosetta.dev/thrift", "grpc", "thrift"},
		{"kubernetes.io/h2c", "tcp-dubbo", "dubbo"},
		{"", "http-dubbo", ""},
		{"", "tcp", ""},
		{"", "redis", "redis"},
	}
	for _, c := range cases {
		p, ok := protos.detect(c.app, c.name)
		if got := map[bool]string{true: p.Codec}[ok]; got != c.want {
			t.Errorf("detect(%q, %q) = %q, want %q", c.app, c.name, got, c.want)
		}
	}
}
