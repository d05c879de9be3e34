package authz_test

import (
	"fmt"
	"net/netip"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/authz"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// A listener that only the shop namespace may call, and that nobody may ask
// for admin methods.
func ExampleCompile() {
	e, err := authz.Compile([]*configv1alpha1.AuthorizationPolicy{{
		Name:   "shop/deny-admin",
		Action: configv1alpha1.AuthorizationPolicy_DENY,
		Rules: []*configv1alpha1.AuthorizationRule{{
			To: []*configv1alpha1.AuthorizationOperation{{
				Attributes: []*configv1alpha1.AttributeValues{{Name: "method", Values: []string{"admin*"}}},
			}},
		}},
	}, {
		Name:   "shop/allow-shop",
		Action: configv1alpha1.AuthorizationPolicy_ALLOW,
		Rules: []*configv1alpha1.AuthorizationRule{{
			From: []*configv1alpha1.AuthorizationSource{{Namespaces: []string{"shop"}}},
		}},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	principal := "cluster.local/ns/shop/sa/cart"
	for _, method := range []string{"addItem", "adminReset"} {
		m := &codec.Message{Kind: codec.KindRequest, Attrs: codec.Map{"method": method}}
		d := e.Check(&authz.Request{
			Principal: principal,
			Namespace: authz.NamespaceOf(principal),
			Peer:      netip.MustParseAddr("10.1.2.3"),
			Port:      20880,
			Attr:      m.Get,
		})
		fmt.Println(method, d.Allowed, d.Reason)
	}
	d := e.Check(&authz.Request{Peer: netip.MustParseAddr("10.1.2.3"), Port: 20880})
	fmt.Println("plaintext", d.Allowed, d.Reason)
	// Output:
	// addItem true allowed by policy "shop/allow-shop"
	// adminReset false denied by policy "shop/deny-admin"
	// plaintext false no ALLOW policy matched
}
