package main

import (
	"fmt"
	"net"

	"github.com/rosetta-mesh/rosetta/pkg/observability"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/spf13/pflag"
)

// defaultAdmin is where /config_dump and pprof are served unless --admin
// or the static config's admin.address says otherwise: loopback, as
// Envoy's admin is in Istio's sidecars.
const defaultAdmin = "127.0.0.1:15000"

// adminOptions are the proxy's two HTTP surfaces: the admin (everything,
// loopback only unless exposed) and the metrics address (/ready and
// /metrics only, meant to be reached by the kubelet and Prometheus).
type adminOptions struct {
	addr        string
	expose      bool
	metricsAddr string
}

func (a *adminOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&a.addr, "admin", "", "admin address for /ready, /metrics, /config_dump and /debug/pprof/ (overrides the config's admin.address; default "+defaultAdmin+"); must be a loopback address unless --expose-admin")
	fs.BoolVar(&a.expose, "expose-admin", false, "allow --admin on an address other than loopback, where anything that reaches it can read the config and take profiles")
	fs.StringVar(&a.metricsAddr, "metrics-address", "", "address serving only /ready and /metrics, for probes and Prometheus (for example :15090); off when empty")
}

// adminListeners are the listening admin and (optional) metrics sockets.
type adminListeners struct {
	admin, metrics net.Listener
}

// listen opens the admin listener (on bootAddr, the static config's
// admin.address, when --admin is not given) and the metrics listener.
func (a *adminOptions) listen(bootAddr string) (*adminListeners, error) {
	admin, err := observability.ListenDebug(a.address(bootAddr), a.expose)
	if err != nil {
		return nil, fmt.Errorf("admin: %w (use --metrics-address for probes and Prometheus, or --expose-admin)", err)
	}
	l := &adminListeners{admin: admin}
	if a.metricsAddr != "" {
		if l.metrics, err = net.Listen("tcp", a.metricsAddr); err != nil {
			admin.Close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return l, nil
}

// address is where the admin listens: --admin, else the static config's
// admin.address, else defaultAdmin.
func (a *adminOptions) address(bootAddr string) string {
	return firstNonEmpty(a.addr, bootAddr, defaultAdmin)
}

// serve serves p's handlers on the listeners until they are closed.
func (l *adminListeners) serve(p *proxy.Proxy) {
	go func() { _ = p.ServeAdmin(l.admin) }()
	if l.metrics != nil {
		go func() { _ = p.ServeMetrics(l.metrics) }()
	}
}

func (l *adminListeners) metricsAddr() string {
	if l.metrics == nil {
		return ""
	}
	return l.metrics.Addr().String()
}

func (l *adminListeners) close() {
	l.admin.Close()
	if l.metrics != nil {
		l.metrics.Close()
	}
}
