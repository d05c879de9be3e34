package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/rosetta-mesh/rosetta/pkg/accesslog"
	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/authz"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/router"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// snapshot is one applied configuration, immutable once built: connections
// load the current one for every request, so an update never disturbs a
// request in flight.
type snapshot struct {
	resources config.Resources
	listeners map[string]*listenerConfig
	// authorities are the HBONE destinations, with the listener that
	// serves each.
	authorities map[netip.AddrPort]string
	routes      map[string]*router.Table
	clusters    map[string]*upstream.Cluster
	// callers are the endpoints' workloads by address, for the source
	// labels of Istio's metrics.
	callers callers
}

// listenerConfig is a compiled Rosetta listener.
type listenerConfig struct {
	name string
	// addr is where it listens; "" for a listener reached only through
	// HBONE, at its authorities.
	addr        string
	authorities []netip.AddrPort
	statPrefix  string
	// protocol is the listener's codec; for an auto listener, one whose
	// New makes a connection's sniffing codec, which hands the connection
	// the config of the protocol its first bytes pick (sniff.go).
	protocol  codec.Protocol
	options   codec.Options
	poolKey   string // the upstream pool for this codec and options
	routeName string
	inline    *router.Table
	// lazyDest is the destination the listener stands for, which a lazy
	// proxy reports (lazy.go); "" for none.
	lazyDest string
	// limits bound each connection's reading; maxConns caps how many are
	// open at once.
	limits   netloop.Limits
	maxConns int
	port     uint32
	// tls, when set, terminates TLS: Istio mutual TLS with the workload
	// identity, or with ownTLS the listener's own certificate from the
	// config's secrets (ownServerConfig). With plaintext the listener also
	// serves plaintext callers (PERMISSIVE).
	tls       *tls.Config
	ownTLS    bool
	plaintext bool
	authz     *authz.Engine
	// tracing samples the listener's requests; nil: no tracing.
	tracing *tracing.Listener
	// accessLogConfig, when set, asks for access logs; accessLog is its
	// logger, set when the snapshot is applied (Validate opens nothing).
	accessLogConfig *accesslog.Config
	accessLog       *accesslog.Logger
}

// table returns the listener's routes in s.
func (lc *listenerConfig) table(s *snapshot) *router.Table {
	if lc.inline != nil {
		return lc.inline
	}
	return s.routes[lc.routeName]
}

// match is the first of the listener's routes in s that req matches, nil
// when none does.
func (lc *listenerConfig) match(s *snapshot, req *codec.Message) *router.Route {
	if t := lc.table(s); t != nil {
		return t.Match(req)
	}
	return nil
}

// compile checks every resource and builds a snapshot; the error names the
// resource and field at fault. Nothing is changed when it fails.
func compile(res config.Resources, mgr *upstream.Manager, id *identity.Workload, def Limits, budget *wire.Budget) (*snapshot, error) {
	s := &snapshot{resources: res, listeners: map[string]*listenerConfig{}, authorities: map[netip.AddrPort]string{}, routes: map[string]*router.Table{}}
	secrets, err := newSecretSet(res.Secrets)
	if err != nil {
		return nil, err
	}
	for i, rc := range res.Routes {
		if rc.GetName() == "" {
			return nil, fmt.Errorf("routes[%d].name: must not be empty", i)
		}
		t, err := router.Compile(rc)
		if err != nil {
			return nil, err
		}
		s.routes[rc.GetName()] = t
	}
	addrs := map[string]string{}
	for i, l := range res.Listeners {
		lc, err := compileListener(l, secrets, id, def, budget)
		if err != nil {
			return nil, fmt.Errorf("listeners[%d] (%s): %w", i, l.GetName(), err)
		}
		if _, dup := s.listeners[lc.name]; dup {
			return nil, fmt.Errorf("listeners[%d].name: %q is defined twice", i, lc.name)
		}
		if other, dup := addrs[lc.addr]; dup && lc.addr != "" {
			return nil, fmt.Errorf("listeners[%d].address: %s is also the address of listener %q", i, lc.addr, other)
		}
		for j, a := range lc.authorities {
			if other, dup := s.authorities[a]; dup {
				return nil, fmt.Errorf("listeners[%d] (%s): filter %s: authorities[%d]: %s is also served by listener %q", i, lc.name, config.FilterName, j, a, other)
			}
			s.authorities[a] = lc.name
		}
		if lc.inline == nil {
			if _, ok := s.routes[lc.routeName]; !ok {
				return nil, fmt.Errorf("listeners[%d] (%s): route_config_name: no route configuration named %q", i, lc.name, lc.routeName)
			}
		}
		addrs[lc.addr] = lc.name
		s.listeners[lc.name] = lc
	}
	if s.clusters, err = mgr.Build(res.Clusters, res.Endpoints); err != nil {
		return nil, err
	}
	s.callers = indexCallers(s.clusters)
	return s, nil
}

func compileListener(l *listenerv3.Listener, secrets *secretSet, id *identity.Workload, def Limits, budget *wire.Budget) (*listenerConfig, error) {
	if l.GetName() == "" {
		return nil, fmt.Errorf("name: must not be empty")
	}
	mp, err := metaProtocolFilter(l)
	if err != nil {
		return nil, err
	}
	authorities, err := parseAuthorities(mp)
	if err != nil {
		return nil, err
	}
	addr, port, err := listenerAddress(l, authorities)
	if err != nil {
		return nil, err
	}
	opts, err := secrets.resolve(mp.GetCodecOptions())
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", config.FilterName, err)
	}
	if mp.GetMaxFrameBytes() > 0 {
		opts = withOption(opts, "max_frame_bytes", strconv.Itoa(int(mp.GetMaxFrameBytes())))
	}
	proto, frameOpts, auto, err := listenerCodec(mp.GetCodec(), opts)
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", config.FilterName, err)
	}
	lc := &listenerConfig{
		name:        l.GetName(),
		addr:        addr,
		authorities: authorities,
		statPrefix:  mp.GetStatPrefix(),
		protocol:    proto,
		options:     opts,
		poolKey:     poolKey(proto.Name, opts),
		routeName:   mp.GetRouteConfigName(),
		port:        port,
		lazyDest:    mp.GetLazy().GetDestination(),
	}
	if lc.statPrefix == "" {
		lc.statPrefix = lc.name
	}
	if lc.limits, lc.maxConns, err = listenerLimits(l, mp, frameOpts, def, budget); err != nil {
		return nil, err
	}
	if err := compileSecurity(lc, l, mp, secrets, id); err != nil {
		return nil, err
	}
	if lc.tracing, err = compileTracing(mp); err != nil {
		return nil, err
	}
	if lc.accessLogConfig, err = accesslog.Compile(mp.GetAccessLog()); err != nil {
		return nil, fmt.Errorf("filter %s: access_log.%w", config.FilterName, err)
	}
	if rc := mp.GetRouteConfig(); rc != nil {
		if lc.inline, err = router.Compile(rc); err != nil {
			return nil, fmt.Errorf("filter %s: route_config: %w", config.FilterName, err)
		}
	} else if lc.routeName == "" {
		return nil, fmt.Errorf("filter %s: one of route_config_name or route_config is required", config.FilterName)
	}
	if auto != nil {
		finishAuto(lc, auto)
	}
	return lc, nil
}

// listenerCodec is the protocol a listener's codec names, checked with its
// options, and the options that size its buffer limit; for codec.Auto, the
// candidates its connections' first bytes choose among (sniff.go).
func listenerCodec(name string, opts codec.Options) (codec.Protocol, codec.Options, []candidate, error) {
	if name == codec.Auto {
		cands, err := autoCandidates(opts)
		if err != nil {
			return codec.Protocol{}, nil, nil, err
		}
		return codec.Protocol{Name: codec.Auto}, autoFrameOptions(cands), cands, nil
	}
	proto, ok := codec.Lookup(name)
	if !ok {
		return codec.Protocol{}, nil, nil, fmt.Errorf("codec: %q is not a codec this proxy was built with (it has %v, or %q to tell them apart by their first bytes)", name, codec.Names(), codec.Auto)
	}
	if _, err := proto.New(opts, codec.PeerClient); err != nil {
		return codec.Protocol{}, nil, nil, fmt.Errorf("codec_options: %w", err)
	}
	return proto, opts, nil, nil
}

// listenerAddress is where a listener listens and the port authorization
// sees. A listener without an address is reached only through HBONE, so it
// must name the destinations it serves there; its port is theirs.
func listenerAddress(l *listenerv3.Listener, authorities []netip.AddrPort) (string, uint32, error) {
	sa := l.GetAddress().GetSocketAddress()
	switch {
	case sa == nil && l.GetAddress().GetAddress() != nil:
		return "", 0, fmt.Errorf("address: only socket_address is supported")
	case sa == nil && len(authorities) > 0:
		return "", uint32(authorities[0].Port()), nil
	case sa == nil:
		return "", 0, fmt.Errorf("address.socket_address: required, unless the listener is reached only through HBONE and its %s filter's authorities name the destinations it serves", config.FilterName)
	case sa.GetPortValue() == 0 && sa.GetAddress() == "":
		return "", 0, fmt.Errorf("address.socket_address: an address and a port_value are required")
	case sa.GetPortValue() > 65535:
		// The field is 32 bits wide; the listen would fail later with a
		// less clear error, after the config had been accepted.
		return "", 0, fmt.Errorf("address.socket_address.port_value: %d is not a port (0-65535)", sa.GetPortValue())
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), sa.GetPortValue(), nil
}

// parseAuthorities reads the HBONE destinations a listener serves.
func parseAuthorities(mp *configv1alpha1.MetaProtocolProxy) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for i, a := range mp.GetAuthorities() {
		ap, err := config.ParseAuthority(a)
		if err != nil {
			return nil, fmt.Errorf("filter %s: authorities[%d]: %w", config.FilterName, i, err)
		}
		if slices.Contains(out, ap) {
			return nil, fmt.Errorf("filter %s: authorities[%d]: %s is listed twice", config.FilterName, i, ap)
		}
		out = append(out, ap)
	}
	return out, nil
}

// metaProtocolFilter finds the listener's MetaProtocolProxy filter.
func metaProtocolFilter(l *listenerv3.Listener) (*configv1alpha1.MetaProtocolProxy, error) {
	for i, fc := range l.GetFilterChains() {
		for j, f := range fc.GetFilters() {
			if f.GetName() != config.FilterName {
				continue
			}
			mp := &configv1alpha1.MetaProtocolProxy{}
			if err := f.GetTypedConfig().UnmarshalTo(mp); err != nil {
				return nil, fmt.Errorf("filter_chains[%d].filters[%d].typed_config: %w", i, j, err)
			}
			return mp, nil
		}
	}
	return nil, fmt.Errorf("filter_chains: no filter named %s", config.FilterName)
}

func withOption(opts codec.Options, k, v string) codec.Options {
	out := codec.Options{k: v}
	for key, val := range opts {
		out[key] = val
	}
	return out
}

// poolKey names an upstream pool: connections are shared by every listener
// whose codec and options are the same.
func poolKey(name string, opts codec.Options) string {
	return name + fmt.Sprint(map[string]string(opts))
}

// Validate checks resources exactly as Apply would, without opening
// anything. It assumes a workload identity, which only a running proxy has.
func Validate(res config.Resources) error {
	id := identity.NewWorkload(nil, nil)
	_, err := compile(res, upstream.NewManager(id), id, DefaultLimits(), nil)
	return err
}
