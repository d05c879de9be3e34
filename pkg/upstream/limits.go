package upstream

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// ReadLimits bound the reading of upstream connections: a server that
// answers without end, or with an answer too large, costs its connection,
// not the proxy's memory.
type ReadLimits struct {
	netloop.Limits
	// OnLimit, when set, is told of each connection closed at a limit.
	OnLimit func(reason string)
}

// SetReadLimits bounds the reading of the upstream connections of
// endpoints made from now on.
func (m *Manager) SetReadLimits(l ReadLimits) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.read = l
}

// ReadLimits are the limits SetReadLimits set.
func (m *Manager) ReadLimits() ReadLimits {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.read
}

// checkBufferLimit refuses a cluster's own buffer limit: endpoints, and so
// their connections, are shared by every cluster that has them, so the
// proxy-wide limit is the one that applies.
func checkBufferLimit(c *clusterv3.Cluster) error {
	if c.GetPerConnectionBufferLimitBytes() != nil {
		return fmt.Errorf("per_connection_buffer_limit_bytes: not supported on clusters: upstream connections are shared between clusters, and the proxy's --per-connection-buffer-limit bounds them all")
	}
	return nil
}

// overLimit tells l's OnLimit when err is a limit's.
func (l *ReadLimits) overLimit(err error) {
	if r := netloop.LimitReason(err); r != "" && l.OnLimit != nil {
		l.OnLimit(r)
	}
}

// limits bound the reading of p's connections: the endpoint's, with room
// for the largest frame p's codec options allow, as a listener with those
// options has.
func (p *Pool) limits() netloop.Limits {
	l := p.ep.read.Limits
	if n := min(p.opts.MaxFrame(), wire.HardLimit); n > l.Buffer.PerConn && l.Buffer.PerConn > 0 {
		l.Buffer.PerConn = n
	}
	return l
}
