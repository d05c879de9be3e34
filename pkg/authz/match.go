package authz

import (
	"fmt"
	"net/netip"
	"strings"
)

// strMatcher is one value in Istio's forms, compiled as Istio compiles it
// (pilot/pkg/security/authz/matcher.StringMatcher): "*" is any non-empty
// value, a leading "*" a suffix, then a trailing "*" a prefix, else exact.
type strMatcher struct {
	kind uint8
	s    string
}

const (
	matchExact uint8 = iota
	matchPrefix
	matchSuffix
	matchPresent
)

func newStrMatcher(v string) strMatcher {
	switch {
	case v == "*":
		return strMatcher{kind: matchPresent}
	case strings.HasPrefix(v, "*"):
		return strMatcher{kind: matchSuffix, s: v[1:]}
	case strings.HasSuffix(v, "*"):
		return strMatcher{kind: matchPrefix, s: v[:len(v)-1]}
	default:
		return strMatcher{kind: matchExact, s: v}
	}
}

func (m *strMatcher) match(v string) bool {
	switch m.kind {
	case matchExact:
		return v == m.s
	case matchPrefix:
		return strings.HasPrefix(v, m.s)
	case matchSuffix:
		return strings.HasSuffix(v, m.s)
	default:
		return v != ""
	}
}

// strMatchers is a field's values, ORed; nil when the field is not set.
type strMatchers []strMatcher

func (ms strMatchers) any(v string) bool {
	for i := range ms {
		if ms[i].match(v) {
			return true
		}
	}
	return false
}

// compileStrings compiles a string field; norm, when set, rewrites each
// value first. Errors start with ".field[i]".
func compileStrings(field string, values []string, norm func(string) string) (strMatchers, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := make(strMatchers, len(values))
	for i, v := range values {
		if norm != nil {
			v = norm(v)
		}
		if v == "" {
			return nil, fmt.Errorf(".%s[%d]: %q: must not be empty", field, i, values[i])
		}
		out[i] = newStrMatcher(v)
	}
	return out, nil
}

// holds reports whether a positive field and its not_ form both hold for v;
// present is false when the request has no such value, which matches no
// value of either.
func holds(pos, neg strMatchers, v string, present bool) bool {
	if pos != nil && (!present || !pos.any(v)) {
		return false
	}
	return !present || !neg.any(v)
}

// compilePrefixes compiles CIDRs and single addresses, v4 or v6. A CIDR's
// host bits are cleared, as Envoy does; IPv4-mapped IPv6 forms become IPv4.
// Errors start with ".field[i]".
func compilePrefixes(field string, values []string) ([]netip.Prefix, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := make([]netip.Prefix, len(values))
	for i, v := range values {
		p, err := parsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf(".%s[%d]: %q: %w", field, i, v, err)
		}
		out[i] = p
	}
	return out, nil
}

func parsePrefix(v string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(v, "/") {
		var err error
		if p, err = netip.ParsePrefix(v); err != nil {
			return p, fmt.Errorf("invalid CIDR")
		}
	} else {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return p, fmt.Errorf("invalid IP address")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// holdsIP is holds for address blocks; the zero peer matches no block.
func holdsIP(pos, neg []netip.Prefix, peer netip.Addr) bool {
	if pos != nil && !containsAddr(pos, peer) {
		return false
	}
	return !containsAddr(neg, peer)
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
