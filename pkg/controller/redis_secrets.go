package controller

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	redisv1 "github.com/rosetta-mesh/rosetta/pkg/apis/redis/v1alpha1"
)

// DefaultSecretRefresh is how often the Secrets Redis auth names are read
// again: about as often as the kubelet refreshes a mounted Secret.
const DefaultSecretRefresh = 30 * time.Second

// secretTimeout bounds one GET, so that a slow API server delays a push by
// at most this much per new reference.
const secretTimeout = 10 * time.Second

// redisSecrets reads the Secrets that Redis auth names, each with a GET by
// name. The controller may not list or watch Secrets: the chart grants
// get on the named Secrets of the namespaces its values list, and nothing
// on the others. Without a watch it reads every named Secret again each
// refresh and signals a change when one differs.
type redisSecrets struct {
	client  corev1client.SecretsGetter
	changed func()
	log     *slog.Logger

	mu sync.Mutex
	// byKey holds what the last read of each named Secret gave: the
	// Secret (slimmed), or nil when it is missing, unlabelled or forbidden.
	byKey map[types.NamespacedName]*corev1.Secret
}

// secretRefs are the Secrets the RedisServices and RedisDestinations name,
// as namespace/name.
func secretRefs(svcs []*redisv1.RedisService, dests []*redisv1.RedisDestination) map[types.NamespacedName]bool {
	refs := map[types.NamespacedName]bool{}
	add := func(ns string, a *redisv1.Auth) {
		if a != nil && a.Secret != nil {
			refs[types.NamespacedName{Namespace: ns, Name: a.Secret.Name}] = true
		}
	}
	for _, rs := range svcs {
		if s := rs.Spec.Settings; s != nil {
			add(rs.Namespace, s.Auth)
		}
	}
	for _, rd := range dests {
		add(rd.Namespace, rd.Redis().Auth)
	}
	return refs
}

// get returns the usable Secrets among refs. A reference read before is
// answered from memory (refresh keeps it current); a new one is read now.
// References no longer named are forgotten.
func (r *redisSecrets) get(ctx context.Context, refs map[types.NamespacedName]bool) []*corev1.Secret {
	r.mu.Lock()
	known := maps.Clone(r.byKey)
	r.mu.Unlock()
	fresh := map[types.NamespacedName]*corev1.Secret{}
	for ref := range refs {
		if _, ok := known[ref]; !ok {
			fresh[ref], _ = r.read(ctx, ref, nil)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[types.NamespacedName]*corev1.Secret, len(refs))
	for ref := range refs {
		// What refresh stored while this read ran is newer than fresh.
		if s, ok := r.byKey[ref]; ok {
			next[ref] = s
		} else {
			next[ref] = fresh[ref]
		}
	}
	r.byKey = next
	out := make([]*corev1.Secret, 0, len(next))
	for _, s := range next {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// refresh reads every known Secret again each interval until ctx ends,
// and calls changed when one appeared, went or changed.
func (r *redisSecrets) refresh(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.reread(ctx) {
			r.changed()
		}
	}
}

// reread reads every known Secret once, and says whether any differs.
func (r *redisSecrets) reread(ctx context.Context) bool {
	r.mu.Lock()
	known := maps.Clone(r.byKey)
	r.mu.Unlock()
	diff := false
	for k, old := range known {
		s, ok := r.read(ctx, k, old)
		if !ok || sameSecret(s, old) {
			continue
		}
		diff = true
		r.mu.Lock()
		if _, still := r.byKey[k]; still {
			r.byKey[k] = s
		}
		r.mu.Unlock()
	}
	return diff
}

// read GETs one Secret. ok is false when the read failed for a reason that
// says nothing about the Secret (a timeout, an unreachable API server):
// the caller then keeps what it had (old), rather than drop credentials
// in force over a blip.
func (r *redisSecrets) read(ctx context.Context, ref types.NamespacedName, old *corev1.Secret) (s *corev1.Secret, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, secretTimeout)
	defer cancel()
	got, err := r.client.Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, true
	case apierrors.IsForbidden(err):
		// The Role from the chart's redisCredentials value does not name it.
		r.log.Warn("a credential Secret may not be read: list it in the chart's redisCredentials (Redis auth) or gatewayCredentials (a Gateway's tls.credentialName) value",
			"secret", ref.String(), "err", err)
		return nil, true
	case err != nil:
		r.log.Warn("read a Redis credential Secret", "secret", ref.String(), "err", err)
		return old, false
	case got.Labels[RedisCredentialsLabel] != "true" && got.Type != corev1.SecretTypeTLS:
		// Neither a Redis credential nor a TLS one (a Gateway's
		// credentialName); buildRedis takes only labelled ones.
		return nil, true
	}
	return slimSecret(got), true
}

// slimSecret keeps what credentials need: name, namespace, the Redis
// label, type and data.
func slimSecret(sec *corev1.Secret) *corev1.Secret {
	out := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: sec.Name, Namespace: sec.Namespace, UID: sec.UID, ResourceVersion: sec.ResourceVersion,
	}, Type: sec.Type, Data: sec.Data}
	if v, ok := sec.Labels[RedisCredentialsLabel]; ok {
		out.Labels = map[string]string{RedisCredentialsLabel: v}
	}
	return out
}

func sameSecret(a, b *corev1.Secret) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.UID == b.UID && a.ResourceVersion == b.ResourceVersion
}
