// Package cli is what rosetta-proxy, rosetta-controller and rosettactl
// share on their command lines: the logging flags and the logger they
// make, and the version they report.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"
)

// Log is the logging the flags --log-level and --log-format choose.
type Log struct {
	Level  string
	Format string
}

// Register adds --log-level, level by default, and --log-format, text by
// default.
func (l *Log) Register(fs *pflag.FlagSet, level string) {
	fs.StringVar(&l.Level, "log-level", level, "debug, info, warn or error")
	fs.StringVar(&l.Format, "log-format", "text", "text or json")
}

// Logger makes the logger the flags ask for, writing to w; a bad level or
// format is an error naming its flag. Durations are logged as durations
// ("1.5s"), not as nanoseconds, in both formats.
func (l Log) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", l.Level)
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	switch l.Format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", l.Format)
}

func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// Version is the module version the binary was built from ("devel" for a
// build inside the repository), with the commit, its time and "modified"
// when the build recorded them (go build records them from a git checkout;
// -buildvcs=false or a git worktree leaves them out).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return VersionOf(bi)
}

// VersionOf formats a build's version: "v1.2.0", or "devel (commit
// 0123456789ab, 2026-12-07T16:01:30Z, modified)".
func VersionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var vcs []string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && s.Value != "":
			vcs = append([]string{"commit " + s.Value[:min(12, len(s.Value))]}, vcs...)
		case s.Key == "vcs.time" && s.Value != "":
			vcs = append(vcs, s.Value)
		case s.Key == "vcs.modified" && s.Value == "true":
			vcs = append(vcs, "modified")
		}
	}
	if len(vcs) > 0 {
		v += " (" + strings.Join(vcs, ", ") + ")"
	}
	return v
}
