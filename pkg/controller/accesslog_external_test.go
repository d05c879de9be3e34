package controller_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

// Options.AccessLog (rosetta-controller --access-log-file) reaches every
// listener of every proxy, and the proxy accepts it; without it no
// listener logs.
func TestAccessLogOnEveryListener(t *testing.T) {
	al := &configv1alpha1.AccessLog{Format: configv1alpha1.AccessLog_JSON, Path: "/dev/stdout", Fields: []string{"route", "status"}}
	for _, on := range []bool{true, false} {
		opts := goldenOptions
		if on {
			opts.AccessLog = al
		}
		ix, proxies := controllertest.BuildFile(t, "testdata/golden/dubbo-subsets.yaml", opts)
		listeners := 0
		for _, p := range proxies {
			res := ix.Generate(p)
			if err := proxy.Validate(*res); err != nil {
				t.Fatalf("proxy %s: %v", p.ID, err)
			}
			for _, l := range res.Listeners {
				for _, fc := range l.GetFilterChains() {
					listeners++
					got := controllertest.ListenerFilter(t, fc).GetAccessLog()
					if on && !proto.Equal(got, al) || !on && got != nil {
						t.Errorf("proxy %s listener %s: access_log %v, want %v", p.ID, l.GetName(), got, on)
					}
				}
			}
		}
		if listeners == 0 {
			t.Fatal("no listeners")
		}
	}
}
