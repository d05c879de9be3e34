package proxy

import (
	"fmt"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// Limits bound what the proxy's peers can make it hold, as Envoy's buffer
// limits and overload manager do. A listener's own settings (its
// per_connection_buffer_limit_bytes, and its filter's idle_timeout,
// frame_timeout and max_connections) win over these defaults.
type Limits struct {
	// BufferBudget bounds the bytes all connections together hold for
	// frames not yet whole, downstream and upstream; 0: no bound.
	BufferBudget int64
	// PerConnectionBuffer bounds the bytes one connection holds for such a
	// frame.
	PerConnectionBuffer int
	// FrameTimeout is how long a begun frame may take to arrive whole; 0:
	// no bound.
	FrameTimeout time.Duration
	// IdleTimeout closes a downstream connection without requests for this
	// long; 0: never.
	IdleTimeout time.Duration
	// MaxConnections caps each listener's downstream connections; 0: no
	// cap.
	MaxConnections int
}

// DefaultLimits fit a sidecar-sized pod: a hostile peer can make the proxy
// hold at most 128 MiB of unfinished frames.
func DefaultLimits() Limits {
	return Limits{
		BufferBudget:        128 << 20,
		PerConnectionBuffer: 16 << 20,
		FrameTimeout:        30 * time.Second,
		IdleTimeout:         time.Hour,
		MaxConnections:      8192,
	}
}

// SetLimits replaces DefaultLimits; call it before the first Apply.
func (p *Proxy) SetLimits(l Limits) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limits = l
	p.budget = wire.NewBudget(l.BufferBudget)
	p.mgr.SetReadLimits(p.upstreamLimits())
	p.metrics.BufferBudget(func() float64 { return float64(p.budget.InUse()) }, float64(l.BufferBudget))
}

// upstreamLimits bound the reading of upstream connections: the same
// budget, frame time and per-connection bound as downstream.
func (p *Proxy) upstreamLimits() upstream.ReadLimits {
	return upstream.ReadLimits{
		Limits: netloop.Limits{
			Frame:  p.limits.FrameTimeout,
			Buffer: wire.Limits{Budget: p.budget, PerConn: p.limits.PerConnectionBuffer},
		},
		OnLimit: p.metrics.UpstreamClosedByLimit,
	}
}

// listenerLimits are a listener's reading limits and connection cap: its
// own settings, else the proxy's defaults.
func listenerLimits(l *listenerv3.Listener, mp *configv1alpha1.MetaProtocolProxy, opts codec.Options, def Limits, budget *wire.Budget) (netloop.Limits, int, error) {
	lim := netloop.Limits{
		Idle:   def.IdleTimeout,
		Frame:  def.FrameTimeout,
		Buffer: wire.Limits{Budget: budget, PerConn: max(def.PerConnectionBuffer, min(opts.MaxFrame(), wire.HardLimit))},
	}
	if d := mp.GetIdleTimeout(); d != nil {
		if lim.Idle = d.AsDuration(); lim.Idle < 0 {
			return lim, 0, fmt.Errorf("filter %s: idle_timeout: must not be negative", config.FilterName)
		}
	}
	if d := mp.GetFrameTimeout(); d != nil {
		if lim.Frame = d.AsDuration(); lim.Frame < 0 {
			return lim, 0, fmt.Errorf("filter %s: frame_timeout: must not be negative", config.FilterName)
		}
	}
	if b := l.GetPerConnectionBufferLimitBytes(); b != nil {
		if b.GetValue() == 0 || int64(b.GetValue()) > wire.HardLimit {
			return lim, 0, fmt.Errorf("per_connection_buffer_limit_bytes: %d is not between 1 and %d", b.GetValue(), wire.HardLimit)
		}
		lim.Buffer.PerConn = int(b.GetValue())
	}
	maxConns := def.MaxConnections
	if n := mp.GetMaxConnections(); n > 0 {
		maxConns = int(n)
	}
	return lim, maxConns, nil
}
