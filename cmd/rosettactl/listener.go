package main

import (
	"fmt"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/router"
)

// rosettaListener is a listener of a static config with its compiled routes.
type rosettaListener struct {
	name      string
	filter    *configv1alpha1.MetaProtocolProxy
	routeName string // "" for inline routes
	table     *router.Table
}

// findListener returns the Rosetta listener called name, or the only one
// when name is empty, with its route table compiled as the proxy compiles it.
// res must have passed proxy.Validate.
func findListener(res config.Resources, name string) (*rosettaListener, error) {
	var l *listenerv3.Listener
	switch {
	case name != "":
		for _, c := range res.Listeners {
			if c.GetName() == name {
				l = c
			}
		}
		if l == nil {
			return nil, fmt.Errorf("no listener named %q (the config has %v)", name, listenerNames(res))
		}
	case len(res.Listeners) == 1:
		l = res.Listeners[0]
	default:
		return nil, fmt.Errorf("the config has %d listeners %v: pick one with --listener", len(res.Listeners), listenerNames(res))
	}
	mp, err := metaProtocolFilter(l)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.GetName(), err)
	}
	out := &rosettaListener{name: l.GetName(), filter: mp, routeName: mp.GetRouteConfigName()}
	rc := mp.GetRouteConfig()
	if rc == nil {
		for _, r := range res.Routes {
			if r.GetName() == out.routeName {
				rc = r
			}
		}
	} else {
		out.routeName = ""
	}
	if rc == nil {
		return nil, fmt.Errorf("listener %q: no route configuration named %q", l.GetName(), out.routeName)
	}
	if out.table, err = router.Compile(rc); err != nil {
		return nil, err
	}
	return out, nil
}

func listenerNames(res config.Resources) []string {
	var names []string
	for _, l := range res.Listeners {
		names = append(names, l.GetName())
	}
	return names
}

// metaProtocolFilter decodes the listener's MetaProtocolProxy filter.
func metaProtocolFilter(l *listenerv3.Listener) (*configv1alpha1.MetaProtocolProxy, error) {
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if f.GetName() != config.FilterName {
				continue
			}
			mp := &configv1alpha1.MetaProtocolProxy{}
			if err := f.GetTypedConfig().UnmarshalTo(mp); err != nil {
				return nil, fmt.Errorf("filter %s: %w", config.FilterName, err)
			}
			return mp, nil
		}
	}
	return nil, fmt.Errorf("no %s filter: not a Rosetta listener", config.FilterName)
}

// describeAction says where a route sends requests: "c" or "a 80% / b 20%".
func describeAction(a *router.Action) string {
	if a.Cluster != "" {
		return a.Cluster
	}
	var total uint32
	for _, w := range a.Weighted {
		total += w.Weight
	}
	s := ""
	for i, w := range a.Weighted {
		if i > 0 {
			s += " / "
		}
		s += fmt.Sprintf("%s %s", w.Name, percent(int(w.Weight), int(total)))
	}
	return s
}

// percent formats n of total as "80%" or "12.5%".
func percent(n, total int) string {
	if total == 0 {
		return "0%"
	}
	return formatPercent(100 * float64(n) / float64(total))
}
