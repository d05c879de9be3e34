// Package control is the Dubbo protocol's part of the controller: ports
// named for dubbo get the dubbo codec, and DubboAuthorizationPolicies
// (Rosetta's group or Aeraki's) become authorization policies of the
// listeners of dubbo ports (see authorization.go). Routes come from
// MetaRouters, as for any protocol.
//
// A controller binary serves Dubbo by importing this package, as a proxy
// binary imports the codec.
package control

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo"
	dubbov1 "github.com/rosetta-mesh/rosetta/protocols/dubbo/api/v1alpha1"
)

// AuthorizationKind is the kind of Dubbo's authorization policies.
const AuthorizationKind = "DubboAuthorizationPolicy"

// AuthorizationGVR is where DubboAuthorizationPolicies are served.
var AuthorizationGVR = dubbov1.SchemeGroupVersion.WithResource("dubboauthorizationpolicies")

func init() {
	controller.Register(controller.TranslatorInfo{
		Protocol: dubbo.Name,
		Kinds: []controller.Kind{{
			Kind: AuthorizationKind, GVR: AuthorizationGVR, AliasGroups: []string{dubbov1.AerakiGroupName},
			New: func() metav1.Object { return &dubbov1.DubboAuthorizationPolicy{} },
			Status: func(o metav1.Object) v1alpha1.MetaRouterStatus {
				st := o.(*dubbov1.DubboAuthorizationPolicy).Status
				return v1alpha1.MetaRouterStatus{ObservedGeneration: st.ObservedGeneration, Conditions: st.Conditions}
			},
		}},
		New: newTranslator,
	})
}

// Interface guards.
var (
	_ controller.Part       = (*part)(nil)
	_ controller.Authorizer = (*part)(nil)
)
