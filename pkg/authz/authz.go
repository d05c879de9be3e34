// Package authz evaluates Istio AuthorizationPolicy for MetaProtocol traffic.
//
// Compile turns a listener's policies into an Engine once per config change;
// the proxy calls Engine.Check on every request. Check reads a Request (the
// caller's verified identity, its address, the listener port and the
// request's codec attributes) and returns a Decision. It does not allocate.
//
// The order is Istio's:
//
//  1. AUDIT policies are evaluated first and never change the decision; the
//     first one that matches is reported in Decision.AuditPolicy.
//  2. A request that any DENY policy matches is denied.
//  3. When there is at least one ALLOW policy, a request that none of them
//     matches is denied; an ALLOW policy without rules therefore denies
//     everything (Istio's allow-nothing).
//  4. Otherwise the request is allowed.
//
// Matching is Istio's too. A policy matches when any of its rules matches. A
// rule matches when one of its sources matches (or it has none) and one of
// its operations matches (or it has none). Every field a source or an
// operation sets must hold; the values of one field are ORed, and a not_
// field holds when none of its values matches. String values are exact,
// "prefix*", "*suffix", or "*" (any non-empty value).
//
// A value that the request does not have (no principal for a plaintext
// caller, no namespace, no peer address, a missing attribute) matches no
// value: a positive field never holds for it and a not_ field always does.
// So principals: ["*"] selects callers with an identity and
// not_principals: ["*"] selects plaintext callers, as in Istio.
package authz

import (
	"fmt"
	"net/netip"
	"strings"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

// Request is what a decision reads. The proxy builds one per request; Check
// does not keep it.
type Request struct {
	// Principal is the caller's verified identity from its mTLS certificate,
	// "<trust-domain>/ns/<namespace>/sa/<service-account>" (a "spiffe://"
	// prefix is tolerated); "" for a plaintext caller.
	Principal string
	// Namespace is the namespace in Principal (see NamespaceOf); "" when none.
	Namespace string
	// Peer is the address of the connection's peer. An IPv4-mapped IPv6
	// address matches IPv4 blocks; the zero Addr matches no block.
	Peer netip.Addr
	// Port is the listener port the request arrived on.
	Port uint32
	// Attr looks up one of the request's codec attributes; the proxy passes
	// (*codec.Message).Get. A nil Attr has no attributes.
	Attr func(name string) (string, bool)
}

// Decision is the outcome of Check. Its strings are computed by Compile, so
// callers may keep them.
type Decision struct {
	Allowed bool
	// Policy is the name of the policy that decided: the DENY policy that
	// denied, or the ALLOW policy that allowed. It is "" when the request was
	// allowed because there is no ALLOW policy, or denied because no ALLOW
	// policy matched.
	Policy string
	// Reason is short, for the error sent to the caller and for logs:
	// `denied by policy "ns/name"`, `no ALLOW policy matched`,
	// `allowed by policy "ns/name"` or `allowed by default`.
	Reason string
	// Audit reports that an AUDIT policy matched; AuditPolicy names the first.
	Audit       bool
	AuditPolicy string
}

// Reasons that no policy owns.
const (
	ReasonNoAllow = "no ALLOW policy matched"
	ReasonDefault = "allowed by default"
)

// Engine is a compiled, immutable set of policies; it is safe for concurrent
// use. The nil Engine allows everything.
type Engine struct {
	audit, deny, allow []policy
}

type policy struct {
	name   string
	reason string
	rules  []rule
}

type rule struct {
	from []source
	to   []operation
}

type source struct {
	principals, notPrincipals strMatchers
	namespaces, notNamespaces strMatchers
	ipBlocks, notIPBlocks     []netip.Prefix
}

type operation struct {
	ports, notPorts []uint32
	attrs           []attrMatcher
}

type attrMatcher struct {
	name              string
	values, notValues strMatchers
}

// Compile checks policies and returns an Engine. Errors name the field, as in
// `authorization[2] "ns/deny-foo": rules[0].from[1].ip_blocks[0]: "10.0.0.0/33": invalid CIDR`.
// Nil or empty policies give an Engine that allows everything.
//
// Compile is stricter than the proto, as Istio's validation is: a policy must
// have a name, a source or an operation must set at least one field, an
// attribute must have a name and values or not_values, values must not be
// empty, and ports must be 1-65535.
func Compile(policies []*configv1alpha1.AuthorizationPolicy) (*Engine, error) {
	e := &Engine{}
	for i, p := range policies {
		cp, err := compilePolicy(p)
		if err != nil {
			return nil, fmt.Errorf("authorization[%d] %q: %w", i, p.GetName(), err)
		}
		switch p.GetAction() {
		case configv1alpha1.AuthorizationPolicy_ALLOW:
			cp.reason = fmt.Sprintf("allowed by policy %q", cp.name)
			e.allow = append(e.allow, cp)
		case configv1alpha1.AuthorizationPolicy_DENY:
			cp.reason = fmt.Sprintf("denied by policy %q", cp.name)
			e.deny = append(e.deny, cp)
		case configv1alpha1.AuthorizationPolicy_AUDIT:
			e.audit = append(e.audit, cp)
		}
	}
	return e, nil
}

func compilePolicy(p *configv1alpha1.AuthorizationPolicy) (policy, error) {
	if p == nil {
		return policy{}, fmt.Errorf("must not be null")
	}
	if p.GetName() == "" {
		return policy{}, fmt.Errorf("name: must not be empty")
	}
	switch a := p.GetAction(); a {
	case configv1alpha1.AuthorizationPolicy_ALLOW, configv1alpha1.AuthorizationPolicy_DENY, configv1alpha1.AuthorizationPolicy_AUDIT:
	default:
		return policy{}, fmt.Errorf("action: unknown value %d", int32(a))
	}
	out := policy{name: p.GetName()}
	for i, r := range p.GetRules() {
		cr, err := compileRule(r)
		if err != nil {
			return policy{}, fmt.Errorf("rules[%d].%w", i, err)
		}
		out.rules = append(out.rules, cr)
	}
	return out, nil
}

func compileRule(r *configv1alpha1.AuthorizationRule) (rule, error) {
	var out rule
	for i, s := range r.GetFrom() {
		cs, err := compileSource(s)
		if err != nil {
			return rule{}, fmt.Errorf("from[%d]%w", i, err)
		}
		out.from = append(out.from, cs)
	}
	for i, o := range r.GetTo() {
		co, err := compileOperation(o)
		if err != nil {
			return rule{}, fmt.Errorf("to[%d]%w", i, err)
		}
		out.to = append(out.to, co)
	}
	return out, nil
}

// compileSource, compileOperation and compileAttr return errors that start
// with the path inside the item (".principals[0]: ..." or ": ..."), so the
// caller prefixes the item's own path ("from[1]").
func compileSource(s *configv1alpha1.AuthorizationSource) (source, error) {
	var out source
	var err error
	if out.principals, err = compileStrings("principals", s.GetPrincipals(), trimSPIFFE); err != nil {
		return source{}, err
	}
	if out.notPrincipals, err = compileStrings("not_principals", s.GetNotPrincipals(), trimSPIFFE); err != nil {
		return source{}, err
	}
	if out.namespaces, err = compileStrings("namespaces", s.GetNamespaces(), nil); err != nil {
		return source{}, err
	}
	if out.notNamespaces, err = compileStrings("not_namespaces", s.GetNotNamespaces(), nil); err != nil {
		return source{}, err
	}
	if out.ipBlocks, err = compilePrefixes("ip_blocks", s.GetIpBlocks()); err != nil {
		return source{}, err
	}
	if out.notIPBlocks, err = compilePrefixes("not_ip_blocks", s.GetNotIpBlocks()); err != nil {
		return source{}, err
	}
	if out.principals == nil && out.notPrincipals == nil && out.namespaces == nil &&
		out.notNamespaces == nil && out.ipBlocks == nil && out.notIPBlocks == nil {
		return source{}, fmt.Errorf(": must set at least one field")
	}
	return out, nil
}

func compileOperation(o *configv1alpha1.AuthorizationOperation) (operation, error) {
	var out operation
	var err error
	if out.ports, err = compilePorts("ports", o.GetPorts()); err != nil {
		return operation{}, err
	}
	if out.notPorts, err = compilePorts("not_ports", o.GetNotPorts()); err != nil {
		return operation{}, err
	}
	for i, a := range o.GetAttributes() {
		ca, err := compileAttr(a)
		if err != nil {
			return operation{}, fmt.Errorf(".attributes[%d]%w", i, err)
		}
		out.attrs = append(out.attrs, ca)
	}
	if out.ports == nil && out.notPorts == nil && out.attrs == nil {
		return operation{}, fmt.Errorf(": must set at least one field")
	}
	return out, nil
}

func compileAttr(a *configv1alpha1.AttributeValues) (attrMatcher, error) {
	if a.GetName() == "" {
		return attrMatcher{}, fmt.Errorf(".name: must not be empty")
	}
	out := attrMatcher{name: a.GetName()}
	var err error
	if out.values, err = compileStrings("values", a.GetValues(), nil); err != nil {
		return attrMatcher{}, err
	}
	if out.notValues, err = compileStrings("not_values", a.GetNotValues(), nil); err != nil {
		return attrMatcher{}, err
	}
	if out.values == nil && out.notValues == nil {
		return attrMatcher{}, fmt.Errorf(" %q: values or not_values is required", out.name)
	}
	return out, nil
}

func compilePorts(field string, ports []uint32) ([]uint32, error) {
	for i, p := range ports {
		if p == 0 || p > 65535 {
			return nil, fmt.Errorf(".%s[%d]: %d: must be 1-65535", field, i, p)
		}
	}
	if len(ports) == 0 {
		return nil, nil
	}
	return append([]uint32(nil), ports...), nil
}

// NamespaceOf returns the namespace in a principal of the form
// "<trust-domain>/ns/<namespace>/sa/<service-account>", with or without
// "spiffe://", or "" when it has none. It does not allocate.
func NamespaceOf(principal string) string {
	_, rest, ok := strings.Cut(trimSPIFFE(principal), "/ns/")
	if !ok {
		return ""
	}
	ns, _, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return ns
}

func trimSPIFFE(s string) string { return strings.TrimPrefix(s, "spiffe://") }

// Empty reports whether the Engine has no policies, so the proxy can skip
// building a Request: Check would allow it by default.
func (e *Engine) Empty() bool {
	return e == nil || len(e.audit)+len(e.deny)+len(e.allow) == 0
}

// Check decides r. It does not allocate and does not keep r.
func (e *Engine) Check(r *Request) Decision {
	if e.Empty() {
		return Decision{Allowed: true, Reason: ReasonDefault}
	}
	q := request{
		principal: trimSPIFFE(r.Principal),
		namespace: r.Namespace,
		peer:      r.Peer.Unmap().WithZone(""),
		port:      r.Port,
		attr:      r.Attr,
	}
	var d Decision
	for i := range e.audit {
		if e.audit[i].matches(&q) {
			d.Audit, d.AuditPolicy = true, e.audit[i].name
			break
		}
	}
	for i := range e.deny {
		if e.deny[i].matches(&q) {
			d.Policy, d.Reason = e.deny[i].name, e.deny[i].reason
			return d
		}
	}
	if len(e.allow) == 0 {
		d.Allowed, d.Reason = true, ReasonDefault
		return d
	}
	for i := range e.allow {
		if e.allow[i].matches(&q) {
			d.Allowed, d.Policy, d.Reason = true, e.allow[i].name, e.allow[i].reason
			return d
		}
	}
	d.Reason = ReasonNoAllow
	return d
}

// request is a Request normalised once per Check.
type request struct {
	principal, namespace string
	peer                 netip.Addr
	port                 uint32
	attr                 func(string) (string, bool)
}

func (p *policy) matches(q *request) bool {
	for i := range p.rules {
		if p.rules[i].matches(q) {
			return true
		}
	}
	return false
}

func (r *rule) matches(q *request) bool {
	return anySource(r.from, q) && anyOperation(r.to, q)
}

func anySource(from []source, q *request) bool {
	if len(from) == 0 {
		return true
	}
	for i := range from {
		if from[i].matches(q) {
			return true
		}
	}
	return false
}

func anyOperation(to []operation, q *request) bool {
	if len(to) == 0 {
		return true
	}
	for i := range to {
		if to[i].matches(q) {
			return true
		}
	}
	return false
}

func (s *source) matches(q *request) bool {
	return holds(s.principals, s.notPrincipals, q.principal, q.principal != "") &&
		holds(s.namespaces, s.notNamespaces, q.namespace, q.namespace != "") &&
		holdsIP(s.ipBlocks, s.notIPBlocks, q.peer)
}

func (o *operation) matches(q *request) bool {
	if o.ports != nil && !containsPort(o.ports, q.port) {
		return false
	}
	if containsPort(o.notPorts, q.port) {
		return false
	}
	for i := range o.attrs {
		a := &o.attrs[i]
		var v string
		var ok bool
		if q.attr != nil {
			v, ok = q.attr(a.name)
		}
		if !holds(a.values, a.notValues, v, ok) {
			return false
		}
	}
	return true
}

func containsPort(ports []uint32, p uint32) bool {
	for _, x := range ports {
		if x == p {
			return true
		}
	}
	return false
}
