package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/spf13/pflag"
)

// registerLimits adds the flags of the proxy's limits, with
// proxy.DefaultLimits as defaults.
func registerLimits(fs *pflag.FlagSet, l *proxy.Limits) {
	*l = proxy.DefaultLimits()
	fs.Var((*byteSize)(&l.BufferBudget), "buffer-budget", "bytes all connections together may hold for frames not yet whole (Ki, Mi, Gi suffixes; 0: no bound)")
	per := int64(l.PerConnectionBuffer)
	fs.Func("per-connection-buffer-limit", fmt.Sprintf("bytes one connection may hold for a frame not yet whole, unless its listener sets per_connection_buffer_limit_bytes (default %s)", (*byteSize)(&per)), func(s string) error {
		n, err := parseBytes(s)
		if err == nil && n <= 0 {
			err = fmt.Errorf("must be positive")
		}
		l.PerConnectionBuffer = int(n)
		return err
	})
	fs.DurationVar(&l.FrameTimeout, "frame-timeout", l.FrameTimeout, "how long a frame may take to arrive whole once it has begun, unless its listener sets frame_timeout (0: no bound)")
	fs.DurationVar(&l.IdleTimeout, "idle-timeout", l.IdleTimeout, "close a downstream connection without requests for this long, unless its listener sets idle_timeout (0: never)")
	fs.IntVar(&l.MaxConnections, "max-connections", l.MaxConnections, "downstream connections a listener keeps open at once, unless it sets max_connections (0: no cap)")
}

// byteSize is a flag of bytes: a number with an optional Ki, Mi or Gi.
type byteSize int64

func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"Gi", 30}, {"Mi", 20}, {"Ki", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Type names the flag's kind in --help.
func (b *byteSize) Type() string { return "bytes" }

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	*b = byteSize(n)
	return err
}

func parseBytes(s string) (int64, error) {
	shift := uint(0)
	for suffix, sh := range map[string]uint{"Ki": 10, "Mi": 20, "Gi": 30} {
		if strings.HasSuffix(s, suffix) {
			s, shift = strings.TrimSuffix(s, suffix), sh
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is not a number of bytes (such as 134217728 or 128Mi)", s)
	}
	return n << shift, nil
}
