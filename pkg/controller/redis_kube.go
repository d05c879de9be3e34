package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	redisv1 "github.com/rosetta-mesh/rosetta/pkg/apis/redis/v1alpha1"
)

// GVRs of the Redis resources.
var (
	RedisServiceGVR     = redisv1.SchemeGroupVersion.WithResource("redisservices")
	RedisDestinationGVR = redisv1.SchemeGroupVersion.WithResource("redisdestinations")
)

// RedisCredentialsLabel marks the Secrets Redis auth may name. The
// controller watches only Secrets with this label set to "true", so it
// does not hold every Secret of the cluster in memory (RBAC cannot limit
// list and watch to some Secrets; the ClusterRole grants them on all).
const RedisCredentialsLabel = "redis.rosetta.dev/credentials"

// redisInformers are the Kubernetes-mode sources of the Redis translation.
type redisInformers struct {
	secretsFactory informers.SharedInformerFactory
	services       cache.Indexer
	dests          cache.Indexer
	secrets        cache.Indexer
}

// addRedisInformers sets up the RedisService, RedisDestination and
// labelled Secret informers; add registers each with the source.
func (s *KubeSource) addRedisInformers(kc kubernetes.Interface, add func(cache.SharedIndexInformer, cache.TransformFunc) error) error {
	s.redis.secretsFactory = informers.NewSharedInformerFactoryWithOptions(kc, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = RedisCredentialsLabel + "=true" }))
	svcs := s.dyn.ForResource(RedisServiceGVR).Informer()
	dests := s.dyn.ForResource(RedisDestinationGVR).Informer()
	secrets := s.redis.secretsFactory.Core().V1().Secrets().Informer()
	for _, step := range []struct {
		inf       cache.SharedIndexInformer
		transform cache.TransformFunc
	}{
		{svcs, typed[redisv1.RedisService]},
		{dests, typed[redisv1.RedisDestination]},
		{secrets, slimSecret},
	} {
		if err := add(step.inf, step.transform); err != nil {
			return fmt.Errorf("controller: redis informer: %w", err)
		}
	}
	s.redis.services, s.redis.dests, s.redis.secrets = svcs.GetIndexer(), dests.GetIndexer(), secrets.GetIndexer()
	return nil
}

// slimSecret keeps what credentials need: name, namespace and data.
func slimSecret(obj any) (any, error) {
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: sec.Name, Namespace: sec.Namespace, UID: sec.UID, ResourceVersion: sec.ResourceVersion,
	}, Data: sec.Data}, nil
}

// startRedis starts the Secret informer factory (the dynamic informers
// start with the source's own factory).
func (s *KubeSource) startRedis(ctx context.Context) {
	s.redis.secretsFactory.Start(ctx.Done())
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
	in.Secrets, err = s.redis.secretsFactory.Core().V1().Secrets().Lister().List(labels.Everything())
	return err
}
