package authz

import (
	"net/netip"
	"testing"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

type (
	policyPB = configv1alpha1.AuthorizationPolicy
	rulePB   = configv1alpha1.AuthorizationRule
	srcPB    = configv1alpha1.AuthorizationSource
	opPB     = configv1alpha1.AuthorizationOperation
	attrPB   = configv1alpha1.AttributeValues
)

const (
	allow = configv1alpha1.AuthorizationPolicy_ALLOW
	deny  = configv1alpha1.AuthorizationPolicy_DENY
	audit = configv1alpha1.AuthorizationPolicy_AUDIT
)

// attrs is a Request.Attr over a map.
func attrs(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

var (
	cartAttrs = attrs(map[string]string{
		"interface": "org.shop.CartService",
		"method":    "addItem",
		"version":   "",
	})
	// mtls is a caller with an identity, plain one without.
	mtls = Request{
		Principal: "cluster.local/ns/shop/sa/cart",
		Namespace: "shop",
		Peer:      netip.MustParseAddr("10.1.2.3"),
		Port:      20880,
		Attr:      cartAttrs,
	}
	plain = Request{
		Peer: netip.MustParseAddr("10.1.2.3"),
		Port: 20880,
		Attr: cartAttrs,
	}
)

func with(r Request, f func(*Request)) Request {
	f(&r)
	return r
}

func from(s ...*srcPB) *rulePB { return &rulePB{From: s} }
func to(o ...*opPB) *rulePB    { return &rulePB{To: o} }
func attr(name string, values, notValues []string) *opPB {
	return &opPB{Attributes: []*attrPB{{Name: name, Values: values, NotValues: notValues}}}
}

func list(s ...string) []string { return s }

// TestRule states, one field at a time, whether a single-rule ALLOW policy
// matches a request.
func TestRule(t *testing.T) {
	v6 := with(mtls, func(r *Request) { r.Peer = netip.MustParseAddr("2001:db8::1") })
	mapped := with(mtls, func(r *Request) { r.Peer = netip.MustParseAddr("::ffff:10.1.2.3") })
	zoned := with(mtls, func(r *Request) { r.Peer = netip.MustParseAddr("fe80::1%eth0") })
	noPeer := with(mtls, func(r *Request) { r.Peer = netip.Addr{} })
	spiffe := with(mtls, func(r *Request) { r.Principal = "spiffe://" + r.Principal })
	noAttrs := with(mtls, func(r *Request) { r.Attr = nil })

	tests := []struct {
		name string
		rule *rulePB
		req  Request
		want bool
	}{
		// Rule shape.
		{"empty rule matches all", &rulePB{}, plain, true},
		{"from ORed", from(&srcPB{Namespaces: list("a")}, &srcPB{Namespaces: list("shop")}), mtls, true},
		{"to ORed", to(&opPB{Ports: []uint32{1}}, &opPB{Ports: []uint32{20880}}), mtls, true},
		{"from and to both hold", &rulePB{From: []*srcPB{{Namespaces: list("shop")}}, To: []*opPB{{Ports: []uint32{20880}}}}, mtls, true},
		{"from holds, to does not", &rulePB{From: []*srcPB{{Namespaces: list("shop")}}, To: []*opPB{{Ports: []uint32{80}}}}, mtls, false},
		{"to holds, from does not", &rulePB{From: []*srcPB{{Namespaces: list("other")}}, To: []*opPB{{Ports: []uint32{20880}}}}, mtls, false},
		{"source fields ANDed", from(&srcPB{Principals: list("*"), Namespaces: list("other")}), mtls, false},

		// principals and the string forms.
		{"principal exact", from(&srcPB{Principals: list("cluster.local/ns/shop/sa/cart")}), mtls, true},
		{"principal exact other", from(&srcPB{Principals: list("cluster.local/ns/shop/sa/pay")}), mtls, false},
		{"principal values ORed", from(&srcPB{Principals: list("x", "cluster.local/ns/shop/sa/cart")}), mtls, true},
		{"principal prefix", from(&srcPB{Principals: list("cluster.local/ns/shop/*")}), mtls, true},
		{"principal prefix other", from(&srcPB{Principals: list("cluster.local/ns/pay/*")}), mtls, false},
		{"principal suffix", from(&srcPB{Principals: list("*/sa/cart")}), mtls, true},
		{"principal suffix other", from(&srcPB{Principals: list("*/sa/pay")}), mtls, false},
		{"principal any", from(&srcPB{Principals: list("*")}), mtls, true},
		{"principal in spiffe form", from(&srcPB{Principals: list("spiffe://cluster.local/ns/shop/sa/cart")}), mtls, true},
		{"request principal in spiffe form", from(&srcPB{Principals: list("cluster.local/ns/shop/sa/cart")}), spiffe, true},
		{"principal no substring match", from(&srcPB{Principals: list("shop")}), mtls, false},
		{"plaintext vs principal any", from(&srcPB{Principals: list("*")}), plain, false},
		{"plaintext vs principal exact", from(&srcPB{Principals: list("cluster.local/ns/shop/sa/cart")}), plain, false},
		{"plaintext vs principal prefix", from(&srcPB{Principals: list("cluster.local/*")}), plain, false},

		// not_principals.
		{"not_principals any, plaintext", from(&srcPB{NotPrincipals: list("*")}), plain, true},
		{"not_principals any, mtls", from(&srcPB{NotPrincipals: list("*")}), mtls, false},
		{"not_principals other", from(&srcPB{NotPrincipals: list("cluster.local/ns/pay/*")}), mtls, true},
		{"not_principals self", from(&srcPB{NotPrincipals: list("x", "*/sa/cart")}), mtls, false},
		{"not_principals exact, plaintext", from(&srcPB{NotPrincipals: list("cluster.local/ns/shop/sa/cart")}), plain, true},
		{"principals and not_principals", from(&srcPB{Principals: list("cluster.local/*"), NotPrincipals: list("*/sa/cart")}), mtls, false},

		// namespaces.
		{"namespace exact", from(&srcPB{Namespaces: list("shop")}), mtls, true},
		{"namespace other", from(&srcPB{Namespaces: list("pay")}), mtls, false},
		{"namespace prefix", from(&srcPB{Namespaces: list("sh*")}), mtls, true},
		{"namespace suffix", from(&srcPB{Namespaces: list("*op")}), mtls, true},
		{"namespace any", from(&srcPB{Namespaces: list("*")}), mtls, true},
		{"plaintext vs namespace any", from(&srcPB{Namespaces: list("*")}), plain, false},
		{"plaintext vs namespace exact", from(&srcPB{Namespaces: list("shop")}), plain, false},
		{"not_namespaces self", from(&srcPB{NotNamespaces: list("shop")}), mtls, false},
		{"not_namespaces other", from(&srcPB{NotNamespaces: list("pay", "kube-*")}), mtls, true},
		{"not_namespaces any, plaintext", from(&srcPB{NotNamespaces: list("*")}), plain, true},
		{"not_namespaces exact, plaintext", from(&srcPB{NotNamespaces: list("shop")}), plain, true},

		// ip_blocks.
		{"ipv4 cidr", from(&srcPB{IpBlocks: list("10.0.0.0/8")}), mtls, true},
		{"ipv4 cidr other", from(&srcPB{IpBlocks: list("192.168.0.0/16")}), mtls, false},
		{"ipv4 single", from(&srcPB{IpBlocks: list("10.1.2.3")}), mtls, true},
		{"ipv4 single other", from(&srcPB{IpBlocks: list("10.1.2.4")}), mtls, false},
		{"ipv4 host bits set", from(&srcPB{IpBlocks: list("10.9.9.9/8")}), mtls, true},
		{"ipv4 /0", from(&srcPB{IpBlocks: list("0.0.0.0/0")}), mtls, true},
		{"ip values ORed", from(&srcPB{IpBlocks: list("192.168.0.0/16", "10.1.0.0/16")}), mtls, true},
		{"ipv6 cidr", from(&srcPB{IpBlocks: list("2001:db8::/32")}), v6, true},
		{"ipv6 cidr other", from(&srcPB{IpBlocks: list("2001:db9::/32")}), v6, false},
		{"ipv6 single", from(&srcPB{IpBlocks: list("2001:db8::1")}), v6, true},
		{"ipv6 peer vs ipv4 block", from(&srcPB{IpBlocks: list("0.0.0.0/0")}), v6, false},
		{"ipv4 peer vs ipv6 block", from(&srcPB{IpBlocks: list("::/0")}), mtls, false},
		{"mapped peer vs ipv4 block", from(&srcPB{IpBlocks: list("10.0.0.0/8")}), mapped, true},
		{"ipv4 peer vs mapped block", from(&srcPB{IpBlocks: list("::ffff:10.0.0.0/104")}), mtls, true},
		{"ipv4 peer vs mapped single", from(&srcPB{IpBlocks: list("::ffff:10.1.2.3")}), mtls, true},
		{"zoned peer", from(&srcPB{IpBlocks: list("fe80::/10")}), zoned, true},
		{"no peer vs ip_blocks", from(&srcPB{IpBlocks: list("0.0.0.0/0")}), noPeer, false},
		{"not_ip_blocks self", from(&srcPB{NotIpBlocks: list("10.0.0.0/8")}), mtls, false},
		{"not_ip_blocks other", from(&srcPB{NotIpBlocks: list("192.168.0.0/16", "2001:db8::/32")}), mtls, true},
		{"not_ip_blocks ipv6 self", from(&srcPB{NotIpBlocks: list("2001:db8::/32")}), v6, false},
		{"no peer vs not_ip_blocks", from(&srcPB{NotIpBlocks: list("0.0.0.0/0")}), noPeer, true},
		{"ip_blocks and not_ip_blocks", from(&srcPB{IpBlocks: list("10.0.0.0/8"), NotIpBlocks: list("10.1.0.0/16")}), mtls, false},

		// ports.
		{"port", to(&opPB{Ports: []uint32{20880}}), mtls, true},
		{"port other", to(&opPB{Ports: []uint32{80}}), mtls, false},
		{"ports ORed", to(&opPB{Ports: []uint32{80, 20880}}), mtls, true},
		{"not_ports self", to(&opPB{NotPorts: []uint32{80, 20880}}), mtls, false},
		{"not_ports other", to(&opPB{NotPorts: []uint32{80}}), mtls, true},
		{"ports and not_ports", to(&opPB{Ports: []uint32{20880}, NotPorts: []uint32{20880}}), mtls, false},

		// attributes.
		{"attribute exact", to(attr("method", list("addItem"), nil)), mtls, true},
		{"attribute exact other", to(attr("method", list("removeItem"), nil)), mtls, false},
		{"attribute values ORed", to(attr("method", list("x", "addItem"), nil)), mtls, true},
		{"attribute prefix", to(attr("interface", list("org.shop.*"), nil)), mtls, true},
		{"attribute suffix", to(attr("interface", list("*.CartService"), nil)), mtls, true},
		{"attribute suffix other", to(attr("interface", list("*.PayService"), nil)), mtls, false},
		{"attribute any", to(attr("method", list("*"), nil)), mtls, true},
		{"attribute any, empty value", to(attr("version", list("*"), nil)), mtls, false},
		{"attribute missing, values", to(attr("group", list("*"), nil)), mtls, false},
		{"attribute missing, not_values", to(attr("group", nil, list("*"))), mtls, true},
		{"attribute not_values self", to(attr("method", nil, list("add*"))), mtls, false},
		{"attribute not_values other", to(attr("method", nil, list("remove*"))), mtls, true},
		{"attribute values and not_values", to(attr("method", list("*Item"), list("addItem"))), mtls, false},
		{"attribute values and not_values other", to(attr("method", list("*Item"), list("removeItem"))), mtls, true},
		{"no attributes, values", to(attr("method", list("*"), nil)), noAttrs, false},
		{"no attributes, not_values", to(attr("method", nil, list("*"))), noAttrs, true},
		{"attributes ANDed", to(&opPB{Attributes: []*attrPB{
			{Name: "interface", Values: list("org.shop.*")},
			{Name: "method", Values: list("removeItem")},
		}}), mtls, false},
		{"attributes and ports", to(&opPB{Ports: []uint32{20880}, Attributes: []*attrPB{{Name: "method", Values: list("addItem")}}}), mtls, true},
		{"attributes hold, port does not", to(&opPB{Ports: []uint32{80}, Attributes: []*attrPB{{Name: "method", Values: list("addItem")}}}), mtls, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Compile([]*policyPB{{Name: "ns/p", Action: allow, Rules: []*rulePB{tt.rule}}})
			if err != nil {
				t.Fatal(err)
			}
			d := e.Check(&tt.req)
			if d.Allowed != tt.want {
				t.Errorf("Allowed = %v, want %v (%s)", d.Allowed, tt.want, d.Reason)
			}
		})
	}
}

// TestOrder states Istio's evaluation order over whole policy sets.
func TestOrder(t *testing.T) {
	matchAll := []*rulePB{{}}
	shop := []*rulePB{from(&srcPB{Namespaces: list("shop")})}
	pay := []*rulePB{from(&srcPB{Namespaces: list("pay")})}
	tests := []struct {
		name     string
		policies []*policyPB
		req      Request
		want     Decision
	}{
		{"no policies", nil, mtls,
			Decision{Allowed: true, Reason: ReasonDefault}},
		{"DENY beats ALLOW", []*policyPB{
			{Name: "ns/allow", Action: allow, Rules: shop},
			{Name: "ns/deny", Action: deny, Rules: shop},
		}, mtls, Decision{Policy: "ns/deny", Reason: `denied by policy "ns/deny"`}},
		{"first matching DENY decides", []*policyPB{
			{Name: "ns/deny-pay", Action: deny, Rules: pay},
			{Name: "ns/deny-1", Action: deny, Rules: shop},
			{Name: "ns/deny-2", Action: deny, Rules: matchAll},
		}, mtls, Decision{Policy: "ns/deny-1", Reason: `denied by policy "ns/deny-1"`}},
		{"DENY not matching, ALLOW matching", []*policyPB{
			{Name: "ns/deny", Action: deny, Rules: pay},
			{Name: "ns/allow-pay", Action: allow, Rules: pay},
			{Name: "ns/allow", Action: allow, Rules: shop},
		}, mtls, Decision{Allowed: true, Policy: "ns/allow", Reason: `allowed by policy "ns/allow"`}},
		{"ALLOW without rules allows nothing", []*policyPB{
			{Name: "ns/allow-nothing", Action: allow},
		}, mtls, Decision{Reason: ReasonNoAllow}},
		{"ALLOW with an empty rule allows all", []*policyPB{
			{Name: "ns/allow-all", Action: allow, Rules: matchAll},
		}, plain, Decision{Allowed: true, Policy: "ns/allow-all", Reason: `allowed by policy "ns/allow-all"`}},
		{"no ALLOW matched", []*policyPB{
			{Name: "ns/allow-pay", Action: allow, Rules: pay},
		}, mtls, Decision{Reason: ReasonNoAllow}},
		{"no ALLOW policies", []*policyPB{
			{Name: "ns/deny", Action: deny, Rules: pay},
		}, mtls, Decision{Allowed: true, Reason: ReasonDefault}},
		{"DENY without rules denies nothing", []*policyPB{
			{Name: "ns/deny", Action: deny},
		}, mtls, Decision{Allowed: true, Reason: ReasonDefault}},
		{"DENY with an empty rule denies all", []*policyPB{
			{Name: "ns/deny-all", Action: deny, Rules: matchAll},
			{Name: "ns/allow-all", Action: allow, Rules: matchAll},
		}, mtls, Decision{Policy: "ns/deny-all", Reason: `denied by policy "ns/deny-all"`}},
		{"AUDIT alone", []*policyPB{
			{Name: "ns/audit", Action: audit, Rules: shop},
		}, mtls, Decision{Allowed: true, Reason: ReasonDefault, Audit: true, AuditPolicy: "ns/audit"}},
		{"AUDIT not matching", []*policyPB{
			{Name: "ns/audit", Action: audit, Rules: pay},
		}, mtls, Decision{Allowed: true, Reason: ReasonDefault}},
		{"AUDIT on a denied request", []*policyPB{
			{Name: "ns/deny", Action: deny, Rules: shop},
			{Name: "ns/audit-pay", Action: audit, Rules: pay},
			{Name: "ns/audit", Action: audit, Rules: shop},
			{Name: "ns/audit-all", Action: audit, Rules: matchAll},
		}, mtls, Decision{Policy: "ns/deny", Reason: `denied by policy "ns/deny"`, Audit: true, AuditPolicy: "ns/audit"}},
		{"AUDIT does not count as ALLOW", []*policyPB{
			{Name: "ns/allow-pay", Action: allow, Rules: pay},
			{Name: "ns/audit", Action: audit, Rules: shop},
		}, mtls, Decision{Reason: ReasonNoAllow, Audit: true, AuditPolicy: "ns/audit"}},
		{"AUDIT on an allowed request", []*policyPB{
			{Name: "ns/allow", Action: allow, Rules: shop},
			{Name: "ns/audit", Action: audit, Rules: matchAll},
		}, mtls, Decision{Allowed: true, Policy: "ns/allow", Reason: `allowed by policy "ns/allow"`, Audit: true, AuditPolicy: "ns/audit"}},
		{"DENY plaintext, plaintext caller", []*policyPB{
			{Name: "ns/require-mtls", Action: deny, Rules: []*rulePB{from(&srcPB{NotPrincipals: list("*")})}},
		}, plain, Decision{Policy: "ns/require-mtls", Reason: `denied by policy "ns/require-mtls"`}},
		{"DENY plaintext, mTLS caller", []*policyPB{
			{Name: "ns/require-mtls", Action: deny, Rules: []*rulePB{from(&srcPB{NotPrincipals: list("*")})}},
		}, mtls, Decision{Allowed: true, Reason: ReasonDefault}},
		{"ALLOW a namespace, plaintext caller", []*policyPB{
			{Name: "ns/allow", Action: allow, Rules: shop},
		}, plain, Decision{Reason: ReasonNoAllow}},
		{"DENY other namespaces, plaintext caller", []*policyPB{
			{Name: "ns/deny", Action: deny, Rules: []*rulePB{from(&srcPB{NotNamespaces: list("shop")})}},
		}, plain, Decision{Policy: "ns/deny", Reason: `denied by policy "ns/deny"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Compile(tt.policies)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Check(&tt.req); got != tt.want {
				t.Errorf("Check = %+v\nwant    %+v", got, tt.want)
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	var nilEngine *Engine
	want := Decision{Allowed: true, Reason: ReasonDefault}
	if !nilEngine.Empty() || nilEngine.Check(&mtls) != want {
		t.Errorf("nil Engine: Empty = %v, Check = %+v", nilEngine.Empty(), nilEngine.Check(&mtls))
	}
	for _, ps := range [][]*policyPB{nil, {}} {
		e, err := Compile(ps)
		if err != nil {
			t.Fatal(err)
		}
		if !e.Empty() || e.Check(&mtls) != want {
			t.Errorf("Compile(%v): Empty = %v, Check = %+v", ps, e.Empty(), e.Check(&mtls))
		}
	}
	for _, a := range []configv1alpha1.AuthorizationPolicy_Action{allow, deny, audit} {
		e, err := Compile([]*policyPB{{Name: "ns/p", Action: a}})
		if err != nil {
			t.Fatal(err)
		}
		if e.Empty() {
			t.Errorf("one %v policy: Empty = true", a)
		}
	}
}

func TestNamespaceOf(t *testing.T) {
	tests := map[string]string{
		"cluster.local/ns/shop/sa/cart":          "shop",
		"spiffe://cluster.local/ns/shop/sa/cart": "shop",
		"td/ns//sa/x":                            "",
		"td/ns/shop":                             "",
		"cluster.local/sa/cart":                  "",
		"":                                       "",
	}
	for in, want := range tests {
		if got := NamespaceOf(in); got != want {
			t.Errorf("NamespaceOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckAllocs guards the promise that Check does not allocate, in every
// outcome, for the benchmark's engine.
func TestCheckAllocs(t *testing.T) {
	e, reqs := benchEngine(t)
	for name, r := range reqs {
		if n := testing.AllocsPerRun(100, func() { e.Check(r) }); n != 0 {
			t.Errorf("%s: Check allocates %v times", name, n)
		}
	}
}

// TestConcurrentCheck lets the race detector see an Engine shared by
// goroutines.
func TestConcurrentCheck(t *testing.T) {
	e, reqs := benchEngine(t)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				for _, r := range reqs {
					e.Check(r)
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}
