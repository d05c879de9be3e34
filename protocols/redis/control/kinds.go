package control

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	redisv1 "github.com/rosetta-mesh/rosetta/protocols/redis/api/v1alpha1"
)

// The Redis kinds.
const (
	ServiceKind     = "RedisService"
	DestinationKind = "RedisDestination"
)

// GVRs of the Redis resources.
var (
	ServiceGVR     = redisv1.SchemeGroupVersion.WithResource("redisservices")
	DestinationGVR = redisv1.SchemeGroupVersion.WithResource("redisdestinations")
)

// CredentialsLabel marks the Secrets Redis auth may name: a Secret
// without it set to "true" is not used even when the controller may read
// it, so naming a Secret in a RedisDestination cannot copy an unrelated
// one (a TLS key, another app's password) into proxies' config.
const CredentialsLabel = "redis.rosetta.dev/credentials"

// kinds are the Redis resources, in Rosetta's group or Aeraki's.
var kinds = []controller.Kind{
	{
		Kind: ServiceKind, GVR: ServiceGVR, AliasGroups: []string{redisv1.AerakiGroupName},
		New: func() metav1.Object { return &redisv1.RedisService{} },
		Status: func(o metav1.Object) v1alpha1.MetaRouterStatus {
			return routerStatus(o.(*redisv1.RedisService).Status)
		},
	},
	{
		Kind: DestinationKind, GVR: DestinationGVR, AliasGroups: []string{redisv1.AerakiGroupName},
		New: func() metav1.Object { return &redisv1.RedisDestination{} },
		Status: func(o metav1.Object) v1alpha1.MetaRouterStatus {
			return routerStatus(o.(*redisv1.RedisDestination).Status)
		},
	},
}

// routerStatus is a Redis status in the shape the status writer compares.
func routerStatus(st redisv1.Status) v1alpha1.MetaRouterStatus {
	return v1alpha1.MetaRouterStatus{ObservedGeneration: st.ObservedGeneration, Conditions: st.Conditions}
}

// secretRefs are the Secrets the RedisServices and RedisDestinations name.
func secretRefs(in *controller.Inputs) []types.NamespacedName {
	var refs []types.NamespacedName
	add := func(ns string, a *redisv1.Auth) {
		if a != nil && a.Secret != nil {
			refs = append(refs, types.NamespacedName{Namespace: ns, Name: a.Secret.Name})
		}
	}
	for _, rs := range controller.ObjectsOf[redisv1.RedisService](in, ServiceKind) {
		if s := rs.Spec.Settings; s != nil {
			add(rs.Namespace, s.Auth)
		}
	}
	for _, rd := range controller.ObjectsOf[redisv1.RedisDestination](in, DestinationKind) {
		add(rd.Namespace, rd.Redis().Auth)
	}
	return refs
}
