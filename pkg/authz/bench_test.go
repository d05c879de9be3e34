package authz

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// benchEngine compiles 20 rules: 4 DENY policies of 2 rules and 4 ALLOW
// policies of 3 rules, each rule with 3 principals, 3 namespaces and two
// attributes of 3 values. It returns requests by outcome; "last ALLOW" matches
// only the last ALLOW rule, after every DENY rule has matched its source and
// failed on its attributes.
func benchEngine(tb testing.TB) (*Engine, map[string]*Request) {
	tb.Helper()
	var ps []*policyPB
	n := 0
	newRule := func(method string) *rulePB {
		n++
		return &rulePB{
			From: []*srcPB{{
				Principals: list(fmt.Sprintf("cluster.local/ns/team%d/sa/a", n), fmt.Sprintf("cluster.local/ns/team%d/*", n), "*/sa/caller"),
				Namespaces: list(fmt.Sprintf("team%d", n), "prod-*", "*-shop"),
			}},
			To: []*opPB{{Attributes: []*attrPB{
				{Name: "interface", Values: list(fmt.Sprintf("org.team%d.Service", n), "org.shop.*", "*.CartService")},
				{Name: "method", Values: list(method+"A", method+"B", method+"*")},
			}}},
		}
	}
	for i := range 4 {
		ps = append(ps, &policyPB{Name: fmt.Sprintf("ns/deny-%d", i), Action: deny,
			Rules: []*rulePB{newRule(fmt.Sprintf("deny%d", i)), newRule(fmt.Sprintf("block%d", i))}})
	}
	for i := range 4 {
		ps = append(ps, &policyPB{Name: fmt.Sprintf("ns/allow-%d", i), Action: allow,
			Rules: []*rulePB{newRule(fmt.Sprintf("get%d", i)), newRule(fmt.Sprintf("put%d", i)), newRule(fmt.Sprintf("list%d", i))}})
	}
	e, err := Compile(ps)
	if err != nil {
		tb.Fatal(err)
	}
	if n != 20 {
		tb.Fatalf("%d rules", n)
	}
	msg := func(method string) func(string) (string, bool) {
		m := &codec.Message{Kind: codec.KindRequest, Attrs: codec.Map{
			"interface": "org.shop.CartService",
			"method":    method,
			"version":   "1.0.0",
		}}
		return m.Get
	}
	caller := Request{
		Principal: "cluster.local/ns/prod-eu/sa/caller",
		Namespace: "prod-eu",
		Peer:      netip.MustParseAddr("10.1.2.3"),
		Port:      20880,
	}
	reqs := map[string]Request{
		"last ALLOW":      with(caller, func(r *Request) { r.Attr = msg("list3Items") }),
		"denied":          with(caller, func(r *Request) { r.Attr = msg("block3Items") }),
		"no ALLOW":        with(caller, func(r *Request) { r.Attr = msg("delete") }),
		"plaintext":       with(caller, func(r *Request) { r.Principal, r.Namespace, r.Attr = "", "", msg("list3Items") }),
		"spiffe":          with(caller, func(r *Request) { r.Principal, r.Attr = "spiffe://"+r.Principal, msg("list3Items") }),
		"mapped, no Attr": with(caller, func(r *Request) { r.Peer = netip.MustParseAddr("::ffff:10.1.2.3") }),
	}
	out := make(map[string]*Request, len(reqs))
	for name, r := range reqs {
		out[name] = &r
	}
	want := map[string]Decision{
		"last ALLOW": {Allowed: true, Policy: "ns/allow-3", Reason: `allowed by policy "ns/allow-3"`},
		"denied":     {Policy: "ns/deny-3", Reason: `denied by policy "ns/deny-3"`},
		"no ALLOW":   {Reason: ReasonNoAllow},
		"plaintext":  {Reason: ReasonNoAllow},
	}
	for name, d := range want {
		if got := e.Check(out[name]); got != d {
			tb.Fatalf("%s: Check = %+v, want %+v", name, got, d)
		}
	}
	return e, out
}

func BenchmarkCheck(b *testing.B) {
	e, reqs := benchEngine(b)
	for _, name := range []string{"last ALLOW", "denied", "no ALLOW", "plaintext"} {
		r := reqs[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Check(r)
			}
		})
	}
	b.Run("empty", func(b *testing.B) {
		var empty *Engine
		r := reqs["last ALLOW"]
		b.ReportAllocs()
		for b.Loop() {
			empty.Check(r)
		}
	})
}
