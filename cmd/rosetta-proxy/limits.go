package main

import (
	"fmt"

	"github.com/rosetta-mesh/rosetta/internal/cli"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/spf13/pflag"
)

// registerLimits adds the flags of the proxy's limits, with
// proxy.DefaultLimits as defaults.
func registerLimits(fs *pflag.FlagSet, l *proxy.Limits) {
	*l = proxy.DefaultLimits()
	fs.Var((*cli.Bytes)(&l.BufferBudget), "buffer-budget", "bytes all connections together may hold for frames not yet whole (Ki, Mi, Gi suffixes; 0: no bound)")
	per := int64(l.PerConnectionBuffer)
	fs.Func("per-connection-buffer-limit", fmt.Sprintf("bytes one connection may hold for a frame not yet whole, unless its listener sets per_connection_buffer_limit_bytes (default %s)", (*cli.Bytes)(&per)), func(s string) error {
		n, err := cli.ParseBytes(s)
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
