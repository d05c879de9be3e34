package controller

// The authorization translation: Istio's AuthorizationPolicy
// (security.istio.io), Rosetta's MetaAuthorizationPolicy and the policies
// of protocols' own kinds (a translator's Authorizer) become the
// MetaProtocolProxy.authorization of each listener, which the proxy
// evaluates with pkg/authz in Istio's order.
//
// Where a policy applies (a listener is one service host and port of one
// proxy):
//
//   - targetRefs (Istio's, or the deprecated targetRef): a Service or
//     ServiceEntry of the policy's namespace covers that service's
//     listeners; a Gateway covers every listener of the proxies of the
//     policy's namespace labelled gateway.networking.k8s.io/gateway-name
//     (or istio.io/gateway-name) with its name. Other kinds cover nothing.
//   - else a selector: every listener of the proxies of the policy's
//     namespace (of any namespace, in the root namespace) whose labels it
//     matches.
//   - else the listeners of the services of the policy's namespace, or of
//     every service when the policy is in the root namespace (mesh-wide).
//   - A MetaAuthorizationPolicy's hosts narrow this to those services, which
//     must be in its namespace (any, in the root namespace); a protocol's
//     own policy covers only ports of its translator's codec, of its
//     namespace's services (every namespace's, in the root namespace).
//
// What Istio says that a MetaProtocol proxy cannot enforce follows Istio's
// own rule for HTTP-only fields on TCP traffic: in an ALLOW policy the rule
// that holds it is dropped (access never widens; an ALLOW policy left
// without rules denies everything it covers), in a DENY or AUDIT policy the
// field is ignored (the rule matches more). Unenforceable are
// requestPrincipals, hosts, paths, `when` keys other than source.principal,
// source.namespace, source.ip, remote.ip and destination.port, invalid
// values, and two positive fields the proxy would have to AND into one list
// (principals with serviceAccounts or trustDomains; ipBlocks with
// remoteIpBlocks; a `when` on a field a source already sets). A source or
// operation left empty in a DENY policy matches everything, so its from or
// to list is left out of the rule. CUSTOM policies (an external authorizer)
// are not supported: as istiod does when it cannot use the provider, each
// becomes a DENY of every request it covers. Each of these is a warning in
// the controller's log.

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/authz"
)

// Kinds, labels and codec attributes the translation uses.
const (
	metaAuthzKind = "MetaAuthorizationPolicy"

	labelGatewayName      = "gateway.networking.k8s.io/gateway-name"
	labelIstioGatewayName = "istio.io/gateway-name"

	// attrMethod is the codec attribute Istio's operation methods match.
	attrMethod = "method"
)

// authzPolicy is a policy in force, translated once per build, and where it
// applies.
type authzPolicy struct {
	ns string
	// hosts, when not nil, are the only services it covers.
	hosts map[string]bool
	// selector, when not nil, picks the proxies that apply it.
	selector map[string]string
	// targets, when not empty, are what it attaches to.
	targets []authzTarget
	// codec, when set, is the only codec whose ports it covers.
	codec string
	out   *configv1alpha1.AuthorizationPolicy
}

type authzTarget struct{ kind, name string }

// authzMemory remembers the last valid version of every Rosetta
// authorization policy, so that an invalid update leaves the previous one
// in force.
type authzMemory struct {
	meta map[string]*v1alpha1.MetaAuthorizationPolicy
}

// AuthorizationStatuses is the status each MetaAuthorizationPolicy should
// have, by "<Kind>/<namespace>/<name>" (protocols' own policies are in
// ProtocolStatuses).
func (ix *Index) AuthorizationStatuses() map[string]RouterStatus { return ix.authzStatuses }

// buildAuthorization translates the policies of in; ix's services and
// parts are indexed. The order is Istio's policies, then
// MetaAuthorizationPolicies, each by namespace and name, then the
// protocols' own (by protocol name, in the order their Authorizer gives).
func (b *Builder) buildAuthorization(ix *Index, in *Inputs) {
	ix.authzStatuses = map[string]RouterStatus{}
	aps := slices.Clone(in.AuthorizationPolicies)
	sortByName(aps)
	for _, ap := range aps {
		out, notes := translateIstio(ap)
		for _, n := range notes {
			ix.warnings = append(ix.warnings, fmt.Sprintf("AuthorizationPolicy %s: %s", key(ap), n))
		}
		ix.authz = append(ix.authz, ix.checked(&authzPolicy{ns: ap.Namespace, selector: istioSelector(ap.Spec.GetSelector()),
			targets: istioTargets(ap, &ix.warnings), out: out}))
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.authz.meta == nil {
		b.authz.meta = map[string]*v1alpha1.MetaAuthorizationPolicy{}
	}
	metas := InForce(slices.Clone(in.MetaAuthorizationPolicies), b.authz.meta, ix.authzStatuses, metaAuthzKind+"/")
	sortByName(metas)
	for _, m := range metas {
		a := &authzPolicy{ns: m.Namespace, out: translateMeta(m)}
		if s := m.Spec.Selector; s != nil {
			a.selector = nonNil(s.MatchLabels)
		}
		for _, t := range m.Spec.TargetRefs {
			a.targets = append(a.targets, authzTarget{t.Kind, t.Name})
		}
		var missing []string
		if len(m.Spec.Hosts) > 0 {
			a.hosts = map[string]bool{}
			for i, h := range m.Spec.Hosts {
				q := ix.qualify(h, m.Namespace)
				svc := ix.services[q]
				switch {
				case svc == nil:
					missing = append(missing, fmt.Sprintf("spec.hosts[%d]: no MetaProtocol service %s", i, q))
				case svc.Namespace != m.Namespace && m.Namespace != ix.opts.RootNamespace:
					missing = append(missing, fmt.Sprintf("spec.hosts[%d]: %s is in namespace %s; a policy covers its own namespace's services (any, in %s)", i, q, svc.Namespace, ix.opts.RootNamespace))
				default:
					a.hosts[q] = true
				}
			}
		}
		for i, t := range m.Spec.TargetRefs {
			if t.Kind != "Gateway" && !ix.hasObject(t.Kind, m.Namespace, t.Name) {
				missing = append(missing, fmt.Sprintf("spec.targetRefs[%d]: no MetaProtocol %s %s/%s", i, t.Kind, m.Namespace, t.Name))
			}
		}
		ix.authz = append(ix.authz, ix.checked(a))
		ix.setAuthzConditions(metaAuthzKind, m, missing)
	}
	ix.protocolAuthorization()
}

// setAuthzConditions records Accepted and ResolvedRefs for a policy in
// force, unless it is invalid now (its status already says so).
func (ix *Index) setAuthzConditions(kind string, o Validated, missing []string) {
	k := kind + "/" + key(o)
	if _, invalid := ix.authzStatuses[k]; invalid {
		return
	}
	gen := o.GetGeneration()
	refs := cond(v1alpha1.ConditionResolvedRefs, true, v1alpha1.ReasonResolved, "every host and Service or ServiceEntry target exists", gen)
	if len(missing) > 0 {
		refs = cond(v1alpha1.ConditionResolvedRefs, false, v1alpha1.ReasonUnknownHost, strings.Join(missing, "; "), gen)
	}
	ix.authzStatuses[k] = RouterStatus{Generation: gen, Conditions: []metav1.Condition{
		cond(v1alpha1.ConditionAccepted, true, v1alpha1.ReasonAccepted, "in force", gen), refs}}
}

// hasObject reports whether a MetaProtocol service comes from the Service
// or ServiceEntry ns/name.
func (ix *Index) hasObject(kind, ns, name string) bool {
	for _, s := range ix.services {
		if s.Kind == kind && s.Namespace == ns && s.Name == name {
			return true
		}
	}
	return false
}

// checked makes sure a translated policy compiles in the proxy. The
// translation only emits what compiles; should a bug let something else
// through, the policy becomes a DENY of everything it covers, rather than
// a config every proxy refuses or a policy that allows too much.
func (ix *Index) checked(a *authzPolicy) *authzPolicy {
	if _, err := authz.Compile([]*configv1alpha1.AuthorizationPolicy{a.out}); err != nil {
		ix.warnings = append(ix.warnings, fmt.Sprintf("authorization policy %s does not compile (%v); it denies every request it covers", a.out.GetName(), err))
		a.out = denyAll(a.out.GetName())
	}
	return a
}

// denyAll is a DENY policy that matches every request: one rule with
// neither from nor to.
func denyAll(name string) *configv1alpha1.AuthorizationPolicy {
	return &configv1alpha1.AuthorizationPolicy{Name: name, Action: configv1alpha1.AuthorizationPolicy_DENY, Rules: []*configv1alpha1.AuthorizationRule{{}}}
}

// authorization lists the policies that apply to a proxy's listener of
// svc's port, nil when none does.
func (g *Generation) authorization(svc *Service, port Port) []*configv1alpha1.AuthorizationPolicy {
	var out []*configv1alpha1.AuthorizationPolicy
	for _, a := range g.ix.authz {
		if a.applies(g.ix.opts.RootNamespace, svc, port.Protocol.Codec, g.proxy) {
			out = append(out, a.out)
		}
	}
	return out
}

func (a *authzPolicy) applies(root string, svc *Service, codec string, p *Proxy) bool {
	if a.codec != "" && codec != a.codec {
		return false
	}
	if a.hosts != nil && !a.hosts[svc.Host] {
		return false
	}
	if len(a.targets) == 0 && a.selector == nil {
		return a.ns == root || svc.Namespace == a.ns
	}
	// Istio refuses a policy with both; one that has both anyway applies
	// where either says, which never widens access.
	for _, t := range a.targets {
		if t.kind == "Gateway" {
			if p.Namespace == a.ns && t.name == gatewayName(p) {
				return true
			}
		} else if svc.Kind == t.kind && svc.Name == t.name && svc.Namespace == a.ns {
			return true
		}
	}
	// A selector in the root namespace picks proxies of every namespace.
	return a.selector != nil && (p.Namespace == a.ns || a.ns == root) &&
		labels.SelectorFromSet(a.selector).Matches(labels.Set(p.Labels))
}

// gatewayName is the Gateway a proxy serves, from its labels; "" for none.
func gatewayName(p *Proxy) string {
	if n := p.Labels[labelGatewayName]; n != "" {
		return n
	}
	return p.Labels[labelIstioGatewayName]
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func istioSelector(s *typev1beta1.WorkloadSelector) map[string]string {
	if s == nil {
		return nil
	}
	return nonNil(s.GetMatchLabels())
}

// istioTargets reads targetRefs and the deprecated targetRef. A reference
// to another kind or namespace covers nothing (warned).
func istioTargets(ap *securityv1.AuthorizationPolicy, warnings *[]string) []authzTarget {
	refs := ap.Spec.GetTargetRefs()
	if r := ap.Spec.GetTargetRef(); r != nil {
		refs = append([]*typev1beta1.PolicyTargetReference{r}, refs...)
	}
	var out []authzTarget
	for i, r := range refs {
		group := r.GetGroup()
		ok := (r.GetKind() == "Service" && (group == "" || group == "core")) ||
			(r.GetKind() == "ServiceEntry" && group == v1alpha1.ServiceEntryGroup) ||
			(r.GetKind() == "Gateway" && group == v1alpha1.GatewayGroup)
		if !ok || (r.GetNamespace() != "" && r.GetNamespace() != ap.Namespace) {
			*warnings = append(*warnings, fmt.Sprintf("AuthorizationPolicy %s: target %d (%s %q %s/%s) is not a Service, ServiceEntry or Gateway of the policy's namespace; it covers no MetaProtocol listener",
				key(ap), i, group, r.GetKind(), r.GetNamespace(), r.GetName()))
			// An unusable reference still makes the policy a targeted one:
			// it must not fall back to namespace-wide.
			out = append(out, authzTarget{kind: "-", name: r.GetName()})
			continue
		}
		out = append(out, authzTarget{r.GetKind(), r.GetName()})
	}
	return out
}

// translateMeta translates a valid MetaAuthorizationPolicy.
func translateMeta(m *v1alpha1.MetaAuthorizationPolicy) *configv1alpha1.AuthorizationPolicy {
	out := &configv1alpha1.AuthorizationPolicy{Name: key(m), Action: action(m.Spec.Action)}
	for _, r := range m.Spec.Rules {
		rule := &configv1alpha1.AuthorizationRule{}
		for _, f := range r.From {
			s := f.Source
			rule.From = append(rule.From, &configv1alpha1.AuthorizationSource{
				Principals: s.Principals, NotPrincipals: s.NotPrincipals,
				Namespaces: s.Namespaces, NotNamespaces: s.NotNamespaces,
				IpBlocks: s.IPBlocks, NotIpBlocks: s.NotIPBlocks,
			})
		}
		for _, t := range r.To {
			o := t.Operation
			op := &configv1alpha1.AuthorizationOperation{Ports: o.Ports, NotPorts: o.NotPorts}
			names := make([]string, 0, len(o.Attributes))
			for n := range o.Attributes {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				v := o.Attributes[n]
				op.Attributes = append(op.Attributes, &configv1alpha1.AttributeValues{Name: n, Values: v.Values, NotValues: v.NotValues})
			}
			rule.To = append(rule.To, op)
		}
		out.Rules = append(out.Rules, rule)
	}
	return out
}

func action(a string) configv1alpha1.AuthorizationPolicy_Action {
	switch a {
	case v1alpha1.ActionDeny:
		return configv1alpha1.AuthorizationPolicy_DENY
	case v1alpha1.ActionAudit:
		return configv1alpha1.AuthorizationPolicy_AUDIT
	}
	return configv1alpha1.AuthorizationPolicy_ALLOW
}

// translateIstio translates an Istio AuthorizationPolicy; notes say what
// could not be enforced and what became of it.
func translateIstio(ap *securityv1.AuthorizationPolicy) (*configv1alpha1.AuthorizationPolicy, []string) {
	out := &configv1alpha1.AuthorizationPolicy{Name: key(ap)}
	switch ap.Spec.GetAction() {
	case securityv1beta1.AuthorizationPolicy_CUSTOM:
		return denyAll(key(ap)), []string{"action CUSTOM (an external authorizer) is not supported for MetaProtocol traffic; the policy denies every request it covers, as istiod does when it cannot use the provider"}
	case securityv1beta1.AuthorizationPolicy_DENY:
		out.Action = configv1alpha1.AuthorizationPolicy_DENY
	case securityv1beta1.AuthorizationPolicy_AUDIT:
		out.Action = configv1alpha1.AuthorizationPolicy_AUDIT
	default:
		out.Action = configv1alpha1.AuthorizationPolicy_ALLOW
	}
	var notes []string
	for i, r := range ap.Spec.GetRules() {
		rt := &ruleTranslation{strict: out.Action == configv1alpha1.AuthorizationPolicy_ALLOW, path: fmt.Sprintf("spec.rules[%d]", i)}
		rule := rt.rule(r)
		notes = append(notes, rt.notes...)
		if rule != nil {
			out.Rules = append(out.Rules, rule)
		}
	}
	return out, notes
}

// ruleTranslation translates one rule of an Istio policy. strict (ALLOW)
// drops the rule at the first field the proxy cannot enforce; otherwise
// the field is ignored.
type ruleTranslation struct {
	strict bool
	drop   bool
	path   string
	notes  []string
}

func (t *ruleTranslation) unenforceable(path, why string) {
	what := "the field is ignored (DENY and AUDIT policies)"
	if t.strict {
		what = "the rule is dropped (ALLOW policy)"
		t.drop = true
	}
	t.notes = append(t.notes, fmt.Sprintf("%s.%s: %s; %s", t.path, path, why, what))
}

const (
	whyHTTP    = "not enforceable on MetaProtocol traffic"
	whyJWT     = "request principals (JWT) are not supported"
	whyAnd     = "the proxy cannot AND it with another field of the same source or operation"
	whyInvalid = "invalid value"
)

// rule returns the translated rule, or nil when it is dropped.
func (t *ruleTranslation) rule(r *securityv1beta1.Rule) *configv1alpha1.AuthorizationRule {
	// froms and tos: nil means any source (any operation).
	var froms []*configv1alpha1.AuthorizationSource
	anyFrom := len(r.GetFrom()) == 0
	for i, f := range r.GetFrom() {
		s := t.source(fmt.Sprintf("from[%d].source", i), f.GetSource())
		if s == nil {
			anyFrom = true // a source that matches every caller
			continue
		}
		froms = append(froms, s)
	}
	var tos []*configv1alpha1.AuthorizationOperation
	anyTo := len(r.GetTo()) == 0
	for i, o := range r.GetTo() {
		op := t.operation(fmt.Sprintf("to[%d].operation", i), o.GetOperation())
		if op == nil {
			anyTo = true
			continue
		}
		tos = append(tos, op)
	}
	if anyFrom {
		froms = nil
	}
	if anyTo {
		tos = nil
	}
	for i, c := range r.GetWhen() {
		froms, tos = t.when(fmt.Sprintf("when[%d]", i), c, froms, tos)
	}
	if t.drop {
		return nil
	}
	return &configv1alpha1.AuthorizationRule{From: froms, To: tos}
}

// source translates a source; nil when it matches every caller (nothing
// enforceable left in a DENY policy). In an ALLOW policy an empty source
// drops the rule: Istio refuses it, and it must not widen access.
func (t *ruleTranslation) source(path string, s *securityv1beta1.Source) *configv1alpha1.AuthorizationSource {
	out := &configv1alpha1.AuthorizationSource{}
	f := fields{t: t, path: path}
	f.set(&out.Principals, "principals", s.GetPrincipals(), nonEmpty)
	f.set(&out.Principals, "serviceAccounts", mapValues(s.GetServiceAccounts(), serviceAccountPrincipal), nonEmpty)
	f.set(&out.Principals, "trustDomains", mapValues(s.GetTrustDomains(), trustDomainPrincipal), nonEmpty)
	f.add(&out.NotPrincipals, "notPrincipals", s.GetNotPrincipals(), nonEmpty)
	f.add(&out.NotPrincipals, "notServiceAccounts", mapValues(s.GetNotServiceAccounts(), serviceAccountPrincipal), nonEmpty)
	f.add(&out.NotPrincipals, "notTrustDomains", mapValues(s.GetNotTrustDomains(), trustDomainPrincipal), nonEmpty)
	f.set(&out.Namespaces, "namespaces", s.GetNamespaces(), nonEmpty)
	f.add(&out.NotNamespaces, "notNamespaces", s.GetNotNamespaces(), nonEmpty)
	f.set(&out.IpBlocks, "ipBlocks", s.GetIpBlocks(), v1alpha1.ValidIPBlock)
	f.set(&out.IpBlocks, "remoteIpBlocks", s.GetRemoteIpBlocks(), v1alpha1.ValidIPBlock)
	f.add(&out.NotIpBlocks, "notIpBlocks", s.GetNotIpBlocks(), v1alpha1.ValidIPBlock)
	f.add(&out.NotIpBlocks, "notRemoteIpBlocks", s.GetNotRemoteIpBlocks(), v1alpha1.ValidIPBlock)
	if len(s.GetRequestPrincipals()) > 0 {
		f.any = true
		t.unenforceable(path+".requestPrincipals", whyJWT)
	}
	if len(s.GetNotRequestPrincipals()) > 0 {
		f.any = true
		t.unenforceable(path+".notRequestPrincipals", whyJWT)
	}
	if len(out.Principals)+len(out.NotPrincipals)+len(out.Namespaces)+len(out.NotNamespaces)+len(out.IpBlocks)+len(out.NotIpBlocks) == 0 {
		if !f.any {
			t.unenforceable(path, "an empty source is invalid")
		}
		return nil
	}
	return out
}

// operation translates an operation; nil when it matches every request.
func (t *ruleTranslation) operation(path string, o *securityv1beta1.Operation) *configv1alpha1.AuthorizationOperation {
	out := &configv1alpha1.AuthorizationOperation{}
	f := fields{t: t, path: path}
	out.Ports = f.ports("ports", o.GetPorts())
	out.NotPorts = f.ports("notPorts", o.GetNotPorts())
	var methods, notMethods []string
	f.set(&methods, "methods", o.GetMethods(), nonEmpty)
	f.add(&notMethods, "notMethods", o.GetNotMethods(), nonEmpty)
	if len(methods)+len(notMethods) > 0 {
		out.Attributes = []*configv1alpha1.AttributeValues{{Name: attrMethod, Values: methods, NotValues: notMethods}}
	}
	for _, u := range []struct {
		name   string
		values []string
	}{{"hosts", o.GetHosts()}, {"notHosts", o.GetNotHosts()}, {"paths", o.GetPaths()}, {"notPaths", o.GetNotPaths()}} {
		if len(u.values) > 0 {
			f.any = true
			t.unenforceable(path+"."+u.name, whyHTTP)
		}
	}
	if len(out.Ports)+len(out.NotPorts)+len(out.Attributes) == 0 {
		if !f.any {
			t.unenforceable(path, "an empty operation is invalid")
		}
		return nil
	}
	return out
}

// when ANDs a condition into every source (or operation). Without sources
// the rule gets one that holds only the condition.
func (t *ruleTranslation) when(path string, c *securityv1beta1.Condition, froms []*configv1alpha1.AuthorizationSource, tos []*configv1alpha1.AuthorizationOperation) ([]*configv1alpha1.AuthorizationSource, []*configv1alpha1.AuthorizationOperation) {
	vals, nots := c.GetValues(), c.GetNotValues()
	if len(vals)+len(nots) == 0 {
		t.unenforceable(path, "a condition needs values or notValues")
		return froms, tos
	}
	var pos, neg func(*configv1alpha1.AuthorizationSource) *[]string
	valid := nonEmpty
	switch c.GetKey() {
	case "source.principal":
		pos = func(s *configv1alpha1.AuthorizationSource) *[]string { return &s.Principals }
		neg = func(s *configv1alpha1.AuthorizationSource) *[]string { return &s.NotPrincipals }
	case "source.namespace":
		pos = func(s *configv1alpha1.AuthorizationSource) *[]string { return &s.Namespaces }
		neg = func(s *configv1alpha1.AuthorizationSource) *[]string { return &s.NotNamespaces }
	case "source.ip", "remote.ip":
		pos = func(s *configv1alpha1.AuthorizationSource) *[]string { return &s.IpBlocks }
		neg = func(s *configv1alpha1.AuthorizationSource) *[]string { return &s.NotIpBlocks }
		valid = v1alpha1.ValidIPBlock
	case "destination.port":
		return froms, t.whenPort(path, vals, nots, tos)
	default:
		t.unenforceable(path, fmt.Sprintf("key %q %s", c.GetKey(), whyHTTP))
		return froms, tos
	}
	if !all(vals, valid) || !all(nots, valid) {
		t.unenforceable(path, whyInvalid)
		return froms, tos
	}
	if froms == nil {
		froms = []*configv1alpha1.AuthorizationSource{{}}
	}
	for _, s := range froms {
		if len(vals) > 0 && len(*pos(s)) > 0 {
			t.unenforceable(path, whyAnd)
			return froms, tos
		}
	}
	// Sources are shared by nothing else: the translation made them.
	for _, s := range froms {
		if len(vals) > 0 {
			*pos(s) = slices.Clone(vals)
		}
		*neg(s) = append(*neg(s), nots...)
	}
	return froms, tos
}

func (t *ruleTranslation) whenPort(path string, vals, nots []string, tos []*configv1alpha1.AuthorizationOperation) []*configv1alpha1.AuthorizationOperation {
	ports, ok1 := parsePorts(vals)
	notPorts, ok2 := parsePorts(nots)
	if !ok1 || !ok2 {
		t.unenforceable(path, whyInvalid)
		return tos
	}
	if tos == nil {
		tos = []*configv1alpha1.AuthorizationOperation{{}}
	}
	for _, o := range tos {
		if len(ports) > 0 && len(o.Ports) > 0 {
			t.unenforceable(path, whyAnd)
			return tos
		}
	}
	for _, o := range tos {
		if len(ports) > 0 {
			o.Ports = slices.Clone(ports)
		}
		o.NotPorts = append(o.NotPorts, notPorts...)
	}
	return tos
}

// fields fills the fields of one source or operation. any records that
// the Istio object set a field at all, enforceable or not.
type fields struct {
	t    *ruleTranslation
	path string
	any  bool
}

// set fills a positive field, which holds when any of its values matches.
// Two Istio fields that fill the same one would need an AND of two ORs.
func (f *fields) set(dst *[]string, name string, values []string, valid func(string) bool) {
	if len(values) == 0 {
		return
	}
	f.any = true
	switch {
	case !all(values, valid):
		f.t.unenforceable(f.path+"."+name, whyInvalid)
	case len(*dst) > 0:
		f.t.unenforceable(f.path+"."+name, whyAnd)
	default:
		*dst = slices.Clone(values)
	}
}

// add fills a negative field: "none of A and none of B" is "none of A or
// B", so several Istio fields may fill one.
func (f *fields) add(dst *[]string, name string, values []string, valid func(string) bool) {
	if len(values) == 0 {
		return
	}
	f.any = true
	if !all(values, valid) {
		f.t.unenforceable(f.path+"."+name, whyInvalid)
		return
	}
	*dst = append(*dst, values...)
}

func (f *fields) ports(name string, values []string) []uint32 {
	if len(values) == 0 {
		return nil
	}
	f.any = true
	ports, ok := parsePorts(values)
	if !ok {
		f.t.unenforceable(f.path+"."+name, whyInvalid)
		return nil
	}
	return ports
}

func parsePorts(values []string) ([]uint32, bool) {
	var out []uint32
	for _, v := range values {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 || n > 65535 {
			return nil, false
		}
		out = append(out, uint32(n))
	}
	return out, true
}

func nonEmpty(s string) bool { return s != "" }

func all(values []string, ok func(string) bool) bool {
	for _, v := range values {
		if !ok(v) {
			return false
		}
	}
	return true
}

// mapValues maps each value, or returns a list holding "" (invalid) when
// one does not map.
func mapValues(values []string, m func(string) (string, bool)) []string {
	out := make([]string, 0, len(values))
	for _, v := range values {
		p, ok := m(v)
		if !ok {
			return []string{""}
		}
		out = append(out, p)
	}
	return out
}

// serviceAccountPrincipal turns Istio's "namespace/name" service account
// into the principals of any trust domain ("*/ns/<ns>/sa/<name>", a suffix).
func serviceAccountPrincipal(v string) (string, bool) {
	ns, name, ok := strings.Cut(v, "/")
	if !ok || ns == "" || name == "" || strings.ContainsAny(name, "/*") || strings.Contains(ns, "*") {
		return "", false
	}
	return "*/ns/" + ns + "/sa/" + name, true
}

// trustDomainPrincipal turns a trust domain into the principals it issues
// ("<td>/*", a prefix).
func trustDomainPrincipal(v string) (string, bool) {
	if v == "" || strings.ContainsAny(v, "/*") {
		return "", false
	}
	return v + "/*", true
}
