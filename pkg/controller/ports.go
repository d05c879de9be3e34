package controller

import (
	"fmt"
	"sort"
)

// Port numbers come from fields wider than a port (uint32 in Istio's
// APIs, int32 in Kubernetes'), and the folder source has no API server to
// check them. The controller leaves out what holds a number outside
// 1-65535, rather than send a listener or an endpoint the proxy refuses
// (a NACK that keeps every other change out too), and names the field in
// the build's warnings.

// validPort reports whether n is a TCP port number a proxy can use.
func validPort[N int32 | uint32 | int64](n N) bool { return n >= 1 && int64(n) <= 65535 }

// portWarnings name each field of in with a port number outside 1-65535,
// and what the controller leaves out for it.
func portWarnings(in *Inputs) []string {
	var out []string
	bad := func(kind string, o object, path string, n int64, left string) {
		out = append(out, fmt.Sprintf("%s %s: %s: %d is not a port (1-65535); %s", kind, key(o), path, n, left))
	}
	for _, s := range in.Services {
		for i, p := range s.Spec.Ports {
			if !validPort(p.Port) {
				bad("Service", s, fmt.Sprintf("spec.ports[%d].port", i), int64(p.Port), "the port is left out")
			}
		}
	}
	for _, s := range in.EndpointSlices {
		for i, p := range s.Ports {
			if p.Port != nil && !validPort(*p.Port) {
				bad("EndpointSlice", s, fmt.Sprintf("ports[%d].port", i), int64(*p.Port), "the port is left out")
			}
		}
	}
	for _, se := range in.ServiceEntries {
		for i, p := range se.Spec.GetPorts() {
			if !validPort(p.GetNumber()) {
				bad("ServiceEntry", se, fmt.Sprintf("spec.ports[%d].number", i), int64(p.GetNumber()), "the port is left out")
			}
			if t := p.GetTargetPort(); t != 0 && !validPort(t) {
				bad("ServiceEntry", se, fmt.Sprintf("spec.ports[%d].targetPort", i), int64(t), "the port is left out")
			}
		}
		for i, e := range se.Spec.GetEndpoints() {
			for _, name := range badPortNames(e.GetPorts()) {
				bad("ServiceEntry", se, fmt.Sprintf("spec.endpoints[%d].ports[%s]", i, name), int64(e.GetPorts()[name]), "the endpoint is left out")
			}
		}
	}
	for _, we := range in.WorkloadEntries {
		for _, name := range badPortNames(we.Spec.GetPorts()) {
			bad("WorkloadEntry", we, "spec.ports["+name+"]", int64(we.Spec.GetPorts()[name]), "the endpoint is left out")
		}
	}
	return out
}

// badPortNames are the names of a port map whose numbers are not ports,
// sorted.
func badPortNames(ports map[string]uint32) []string {
	var out []string
	for name, n := range ports {
		if !validPort(n) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
