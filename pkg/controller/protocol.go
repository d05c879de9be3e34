package controller

import (
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// Protocol is what the controller knows about a port's protocol.
type Protocol struct {
	Name         string
	Codec        string
	CodecOptions map[string]string
}

// protocols resolves protocol names to codecs: ApplicationProtocols first
// (the oldest wins a duplicate), then the registered translators' (see
// translator.go).
type protocols map[string]Protocol

func newProtocols(aps []*v1alpha1.ApplicationProtocol) protocols {
	p := protocols{}
	for name, codec := range knownProtocols() {
		p[name] = Protocol{Name: name, Codec: codec}
	}
	sortByAge(aps)
	seen := map[string]bool{}
	for _, ap := range aps {
		if len(ap.Validate()) > 0 || seen[ap.Spec.Protocol] {
			continue
		}
		seen[ap.Spec.Protocol] = true
		p[ap.Spec.Protocol] = Protocol{Name: ap.Spec.Protocol, Codec: ap.CodecName(), CodecOptions: ap.Spec.CodecOptions}
	}
	return p
}

// detect finds a port's protocol, in order: the appProtocol, then the port
// name ("<name>", "<name>-*", "tcp-<name>-*", Aeraki's
// "tcp-metaprotocol-<name>-*"). ok is false for ports of other protocols,
// which the controller leaves alone.
func (p protocols) detect(appProtocol, portName string) (Protocol, bool) {
	if appProtocol != "" {
		name := strings.ToLower(appProtocol)
		// Kubernetes asks for domain-prefixed values for non-standard
		// protocols: accept "rosetta.dev/<name>" as well as "<name>".
		if i := strings.LastIndex(name, "/"); i >= 0 {
			name = name[i+1:]
		}
		name = strings.TrimPrefix(name, "tcp-")
		if proto, ok := p[name]; ok {
			return proto, true
		}
		if proto, ok := p.fromName(name); ok {
			return proto, true
		}
	}
	return p.fromName(strings.ToLower(portName))
}

func (p protocols) fromName(name string) (Protocol, bool) {
	if rest, ok := strings.CutPrefix(name, "tcp-metaprotocol-"); ok {
		// The protocol name may itself contain dashes: try the longest
		// known prefix first.
		for i := len(rest); i > 0; i-- {
			if i < len(rest) && rest[i] != '-' {
				continue
			}
			if proto, ok := p[rest[:i]]; ok {
				return proto, true
			}
		}
		return Protocol{}, false
	}
	name = strings.TrimPrefix(name, "tcp-")
	first, _, _ := strings.Cut(name, "-")
	proto, ok := p[first]
	return proto, ok
}

// knownProtocols maps the protocol names known without an
// ApplicationProtocol to their codec: the registered translators'.
func knownProtocols() map[string]string {
	out := map[string]string{}
	for _, t := range Translators() {
		out[t.Protocol] = t.Codec
	}
	return out
}
