package main

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestXDSModeIsDeltaUnlessSotwIsAsked(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		delta bool
	}{
		{nil, true},
		{[]string{"--xds-mode=delta"}, true},
		{[]string{"--xds-mode=sotw"}, false},
	} {
		fs := pflag.NewFlagSet("rosetta-proxy", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var delta bool
		registerXDSMode(fs, &delta)
		if err := fs.Parse(tc.args); err != nil || delta != tc.delta {
			t.Errorf("%v: delta %v (%v), want %v", tc.args, delta, err, tc.delta)
		}
	}
	fs := pflag.NewFlagSet("rosetta-proxy", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var delta bool
	registerXDSMode(fs, &delta)
	if err := fs.Parse([]string{"--xds-mode=incremental"}); err == nil || !strings.Contains(err.Error(), `"incremental" is not delta or sotw`) {
		t.Errorf("--xds-mode=incremental: %v", err)
	}
	var help strings.Builder
	cmd := newCommand()
	cmd.SetArgs([]string{"--help"})
	cmd.SetOut(&help)
	if err := cmd.Execute(); err != nil || !strings.Contains(help.String(), "--xds-mode delta|sotw") || !strings.Contains(help.String(), `(default delta)`) {
		t.Errorf("--help does not show --xds-mode and its default: %v\n%s", err, help.String())
	}
}
