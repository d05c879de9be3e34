package controller

import (
	"context"
	"fmt"
	"maps"

	"log/slog"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	redisv1 "github.com/rosetta-mesh/rosetta/pkg/apis/redis/v1alpha1"
)

// GVRs of the Redis resources.
var (
	RedisServiceGVR     = redisv1.SchemeGroupVersion.WithResource("redisservices")
	RedisDestinationGVR = redisv1.SchemeGroupVersion.WithResource("redisdestinations")
)

// RedisCredentialsLabel marks the Secrets Redis auth may name: a Secret
// without it set to "true" is not used even when the controller may read
// it, so naming a Secret in a RedisDestination cannot copy an unrelated
// one (a TLS key, another app's password) into proxies' config.
const RedisCredentialsLabel = "redis.rosetta.dev/credentials"

// redisInformers are the Kubernetes-mode sources of the Redis translation.
// Secrets are not watched: redisSecrets reads the named ones by name.
type redisInformers struct {
	services cache.Indexer
	dests    cache.Indexer
	secrets  *redisSecrets
	// ctx ends the Secret reads when the source stops.
	ctx context.Context
}

// addRedisInformers sets up the RedisService and RedisDestination
// informers, registered with add, and the Secret reader.
func (s *KubeSource) addRedisInformers(kc kubernetes.Interface, changed func(), add func(cache.SharedIndexInformer, cache.TransformFunc) error) error {
	svcs := s.dyn.ForResource(RedisServiceGVR).Informer()
	dests := s.dyn.ForResource(RedisDestinationGVR).Informer()
	for _, step := range []struct {
		inf       cache.SharedIndexInformer
		transform cache.TransformFunc
	}{
		{svcs, typed[redisv1.RedisService]},
		{dests, typed[redisv1.RedisDestination]},
	} {
		if err := add(step.inf, step.transform); err != nil {
			return fmt.Errorf("controller: redis informer: %w", err)
		}
	}
	s.redis.services, s.redis.dests = svcs.GetIndexer(), dests.GetIndexer()
	s.redis.secrets = &redisSecrets{client: kc.CoreV1(), changed: changed, log: slog.Default()}
	s.redis.ctx = context.Background()
	return nil
}

// startRedis starts re-reading the named Secrets every SecretRefresh (the
// dynamic informers start with the source's own factory).
func (s *KubeSource) startRedis(ctx context.Context) {
	s.redis.ctx = ctx
	if s.Log != nil {
		s.redis.secrets.log = s.Log
	}
	every := s.SecretRefresh
	if every <= 0 {
		every = DefaultSecretRefresh
	}
	go s.redis.secrets.refresh(ctx, every)
}

// redisInputs reads the Redis informers' caches into in.
func (s *KubeSource) redisInputs(in *Inputs) error {
	var err error
	if in.RedisServices, err = listTyped[redisv1.RedisService](s.redis.services); err != nil {
		return err
	}
	if in.RedisDestinations, err = listTyped[redisv1.RedisDestination](s.redis.dests); err != nil {
		return err
	}
	refs := secretRefs(in.RedisServices, in.RedisDestinations)
	maps.Copy(refs, gatewayCredentialRefs(in.Gateways))
	in.Secrets = s.redis.secrets.get(s.redis.ctx, refs)
	return nil
}
