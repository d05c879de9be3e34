package config

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestParseWorkloadRefusesMalformed(t *testing.T) {
	md := func(v string) *corev3.Metadata {
		return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{IstioMetadataKey: {Fields: map[string]*structpb.Value{WorkloadKey: structpb.NewStringValue(v)}}}}
	}
	for _, c := range []struct{ value, err string }{
		{"a;b;c", "got 3 fields"},
		{strings.Repeat("x", 300) + ";ns;app;v1;K", "over the 253-byte limit"},
	} {
		if _, _, err := ParseWorkload(md(c.value)); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("ParseWorkload(%.20q) = %v, want an error with %q", c.value, err, c.err)
		}
	}
	if _, ok, err := ParseWorkload(nil); ok || err != nil {
		t.Errorf("no metadata: ok %v, err %v; want neither", ok, err)
	}
	s := ServiceMetadata{Host: "greeter.shop.svc.cluster.local", Name: "greeter", Namespace: "shop"}
	if got, ok, err := ParseService(s.Metadata()); !ok || err != nil || got != s {
		t.Errorf("ParseService(Metadata(%+v)) = %+v, %v, %v", s, got, ok, err)
	}
}
