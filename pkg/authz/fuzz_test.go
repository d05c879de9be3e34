package authz

import (
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

// FuzzCompileCheck decodes a MetaProtocolProxy's policies from the input,
// compiles them and checks a request built from the other inputs: nothing
// may panic, and a decision must be consistent with the policies that
// compiled.
func FuzzCompileCheck(f *testing.F) {
	seeds := [][]*policyPB{
		{{Name: "ns/deny", Action: deny, Rules: []*rulePB{
			from(&srcPB{NotPrincipals: list("*")}),
			from(&srcPB{IpBlocks: list("10.0.0.0/8", "2001:db8::/32"), NotIpBlocks: list("10.1.2.3")}),
		}}},
		{{Name: "ns/allow", Action: allow, Rules: []*rulePB{{
			From: []*srcPB{{Principals: list("cluster.local/ns/shop/*", "spiffe://td/ns/x/sa/y"), Namespaces: list("shop", "*-prod")}},
			To:   []*opPB{{Ports: []uint32{20880}, NotPorts: []uint32{80}, Attributes: []*attrPB{{Name: "method", Values: list("add*", "*Item"), NotValues: list("addAdmin")}}}},
		}}}},
		{
			{Name: "ns/audit", Action: audit, Rules: []*rulePB{{}}},
			{Name: "ns/allow-nothing", Action: allow},
			{Name: "ns/deny-ns", Action: deny, Rules: []*rulePB{from(&srcPB{NotNamespaces: list("shop")})}},
		},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(&configv1alpha1.MetaProtocolProxy{Codec: "dubbo", Authorization: s})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "cluster.local/ns/shop/sa/cart", []byte{10, 1, 2, 3}, uint32(20880), "addItem")
		f.Add(b, "", []byte(netip.MustParseAddr("2001:db8::1").AsSlice()), uint32(80), "")
	}
	f.Fuzz(func(t *testing.T, data []byte, principal string, peer []byte, port uint32, method string) {
		var mp configv1alpha1.MetaProtocolProxy
		if err := proto.Unmarshal(data, &mp); err != nil {
			return
		}
		e, err := Compile(mp.GetAuthorization())
		if err != nil {
			if !strings.HasPrefix(err.Error(), "authorization[") {
				t.Fatalf("error without a field path: %v", err)
			}
			return
		}
		addr, _ := netip.AddrFromSlice(peer)
		r := &Request{
			Principal: principal,
			Namespace: NamespaceOf(principal),
			Peer:      addr,
			Port:      port,
			Attr: func(name string) (string, bool) {
				return method, name == "method"
			},
		}
		d := e.Check(r)
		if d.Reason == "" {
			t.Fatalf("decision without a reason: %+v", d)
		}
		if d.Audit != (d.AuditPolicy != "") {
			t.Fatalf("inconsistent audit: %+v", d)
		}
		if d.Policy != "" && !hasPolicy(mp.GetAuthorization(), d.Policy, d.Allowed) {
			t.Fatalf("decided by %q, not an ALLOW (allowed) or DENY (denied) policy: %+v", d.Policy, d)
		}
		if !d.Allowed && d.Policy == "" && !hasAction(mp.GetAuthorization(), allow) {
			t.Fatalf("denied without a DENY policy or any ALLOW policy: %+v", d)
		}
	})
}

func hasPolicy(ps []*policyPB, name string, allowed bool) bool {
	want := deny
	if allowed {
		want = allow
	}
	for _, p := range ps {
		if p.GetName() == name && p.GetAction() == want {
			return true
		}
	}
	return false
}

func hasAction(ps []*policyPB, a configv1alpha1.AuthorizationPolicy_Action) bool {
	for _, p := range ps {
		if p.GetAction() == a {
			return true
		}
	}
	return false
}
