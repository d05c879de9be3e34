package controller

import (
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	redisv1 "github.com/rosetta-mesh/rosetta/pkg/apis/redis/v1alpha1"
)

func redisGVR(kind string) (schema.GroupVersionResource, bool) {
	switch kind {
	case redisServiceKind:
		return RedisServiceGVR, true
	case redisDestinationKind:
		return RedisDestinationGVR, true
	}
	return schema.GroupVersionResource{}, false
}

// RedisObject returns the cached RedisService or RedisDestination a Redis
// status key ("kind/namespace/name", as Index.RedisStatuses keys them)
// names: StatusWriter.Current for the Kubernetes source.
func (s *KubeSource) RedisObject(key string) (StatusObject, bool) {
	kind, ns, name, ok := splitRedisKey(key)
	if !ok {
		return StatusObject{}, false
	}
	gvr, _ := redisGVR(kind)
	var gen int64
	var st redisv1.Status
	switch kind {
	case redisServiceKind:
		o, found, err := s.redis.services.GetByKey(ns + "/" + name)
		rs, is := o.(*redisv1.RedisService)
		if err != nil || !found || !is {
			return StatusObject{}, false
		}
		gen, st = rs.Generation, rs.Status
	case redisDestinationKind:
		o, found, err := s.redis.dests.GetByKey(ns + "/" + name)
		rd, is := o.(*redisv1.RedisDestination)
		if err != nil || !found || !is {
			return StatusObject{}, false
		}
		gen, st = rd.Generation, rd.Status
	default:
		return StatusObject{}, false
	}
	return StatusObject{GVR: gvr, Namespace: ns, Name: name, Generation: gen,
		Status: v1alpha1.MetaRouterStatus{ObservedGeneration: st.ObservedGeneration, Conditions: st.Conditions}}, true
}

// splitRedisKey splits a Redis status key into kind, namespace and name.
func splitRedisKey(key string) (kind, ns, name string, ok bool) {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}
