package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	xdsclient "github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

// lazyOptions put the proxy in lazy mode (docs/mesh-integration.md, "Lazy
// mode").
type lazyOptions struct {
	on   bool
	idle time.Duration
}

func (o *lazyOptions) register(fs *pflag.FlagSet) {
	fs.BoolVar(&o.on, "lazy", false, "lazy mode (with --xds, delta only): take the config of only the destinations this proxy's callers use, reported to the controller as they connect; calls to the others go through the controller's fallback proxy (--lazy-fallback) until the controller sends theirs")
	fs.DurationVar(&o.idle, "lazy-idle", 30*time.Minute, "with --lazy: how long a destination stays in this proxy's config after its last connection closed")
}

// start turns lazy mode on: the proxy reports each destination its
// callers connect to through the xDS client, which withdraws the unused
// ones. Call it before the proxy's first Apply.
func (o *lazyOptions) start(ctx context.Context, p *proxy.Proxy, xo *xdsclient.Options) error {
	if !o.on {
		return nil
	}
	switch {
	case xo.Address == "":
		return errors.New("--lazy needs --xds: the controller narrows the config of a lazy proxy")
	case !xo.Delta:
		return errors.New("--lazy needs --xds-mode=delta: a lazy proxy reports its destinations as delta subscriptions")
	case o.idle <= 0:
		return errors.New("--lazy-idle: must be positive")
	}
	d := xdsclient.NewDestinations(o.idle)
	p.ReportDestinations(d)
	xo.Lazy = d
	go d.Run(ctx)
	return nil
}
