package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// Rejection is a proxy's refusal (an xDS NACK) of the config it was last
// sent of one resource type; the proxy keeps serving the config it had.
type Rejection struct {
	Proxy   string
	Type    string // the resource type, short: "Listener"
	Version string
	Detail  string // the proxy's reason
}

// maxRejectionMessage bounds a Programmed condition's message: every proxy
// of a namespace may refuse, each with a long reason.
const maxRejectionMessage = 4000

// RoutersFor returns the MetaRouters (namespace/name) whose routes the
// config Generate gives p carries, sorted: the objects whose latest version
// is not in force on p while p refuses that config.
func (ix *Index) RoutersFor(p *Proxy) []string {
	sc := ix.sidecarFor(p)
	seen := map[string]bool{}
	for _, h := range ix.hosts {
		if !ix.sees(p, sc, ix.services[h]) {
			continue
		}
		if mr := ix.router(h, p.Namespace); mr != nil {
			seen[key(mr)] = true
		}
	}
	for _, gs := range ix.gatewayServers(p) {
		seen[key(gs.router)] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// WithRejections returns st with a Programmed=False condition added to each
// MetaRouter that rejected names (by namespace/name), saying which proxies
// refused which version and why. Without rejections a MetaRouter has no
// Programmed condition: Accepted=True then means it is in force on every
// proxy that acknowledged its push. st is not modified.
func WithRejections(st map[string]RouterStatus, rejected map[string][]Rejection) map[string]RouterStatus {
	if len(rejected) == 0 {
		return st
	}
	out := maps.Clone(st)
	for k, rs := range rejected {
		cur, ok := out[k]
		if !ok {
			continue // gone since the proxy refused
		}
		cur.Conditions = append(slices.Clone(cur.Conditions),
			cond(v1alpha1.ConditionProgrammed, false, v1alpha1.ReasonRefused, rejectionMessage(rs), cur.Generation))
		out[k] = cur
	}
	return out
}

// rejectionMessage says who refused what, sorted so that the same
// rejections give the same message (and no status write).
func rejectionMessage(rs []Rejection) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("proxy %s refused version %s of %s (it keeps the config it had): %s", r.Proxy, r.Version, r.Type, r.Detail))
	}
	slices.Sort(parts)
	msg := strings.Join(parts, "; ")
	if len(msg) > maxRejectionMessage {
		msg = msg[:maxRejectionMessage] + "..."
	}
	return msg
}
