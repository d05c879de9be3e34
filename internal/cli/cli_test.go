package cli

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestLoggerFromFlags(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var l Log
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		l.Register(fs, "info")
		if err := fs.Parse([]string{"--log-level=debug", "--log-format=" + format}); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		log, err := l.Logger(&out)
		if err != nil {
			t.Fatal(err)
		}
		log.Debug("draining", "timeout", 20*time.Second)
		if !strings.Contains(out.String(), "20s") || strings.Contains(out.String(), "20000000000") {
			t.Errorf("%s: a duration logged as %q", format, out.String())
		}
	}
}

func TestBadLogFlagsAreErrors(t *testing.T) {
	if _, err := (Log{Level: "loud", Format: "text"}).Logger(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("a bad level: %v", err)
	}
	if _, err := (Log{Level: "info", Format: "xml"}).Logger(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("a bad format: %v", err)
	}
}

func TestVersion(t *testing.T) {
	if Version() == "" {
		t.Fatal("no version")
	}
}

func TestVersionOf(t *testing.T) {
	for _, c := range []struct {
		bi   debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
		{debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, "v1.2.0"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-07T16:01:30Z"},
			{Key: "vcs.modified", Value: "true"},
		}}, "devel (commit 0123456789ab, 2026-12-07T16:01:30Z, modified)"},
		{debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"},
		}}, "v1.2.0 (commit abc)"},
	} {
		if got := VersionOf(&c.bi); got != c.want {
			t.Errorf("VersionOf(%v) = %q, want %q", c.bi.Settings, got, c.want)
		}
	}
}
