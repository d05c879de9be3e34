package controller

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// DefaultSecretRefresh is how often the credential Secrets (those
// protocols' objects and Gateways name) are read again: about as often as
// the kubelet refreshes a mounted Secret.
const DefaultSecretRefresh = 30 * time.Second

// secretTimeout bounds one GET, so that a slow API server delays a push by
// at most this much per new reference.
const secretTimeout = 10 * time.Second

// credentialSecrets reads the Secrets that protocols' objects (a
// translator's SecretRefs) and Gateways name, each with a GET by name. The
// controller may not list or watch Secrets: the chart grants get on the
// named Secrets of the namespaces its values list, and nothing on the
// others. Without a watch it reads every named Secret again each refresh
// and signals a change when one differs.
type credentialSecrets struct {
	client  corev1client.SecretsGetter
	changed func()
	log     *slog.Logger
	// labels mark the Secrets a translator may use (Credentials.Label);
	// an unlabelled one is used only when of type kubernetes.io/tls.
	labels []string
	// chartValues name the chart values that grant get on them, for the log.
	chartValues string

	mu sync.Mutex
	// byKey holds what the last read of each named Secret gave: the
	// Secret (slimmed), or nil when it is missing, unlabelled or forbidden.
	byKey map[types.NamespacedName]*corev1.Secret
}

// newCredentialSecrets makes the reader of the registered translators'
// credentials and Gateways'.
func newCredentialSecrets(client corev1client.SecretsGetter, changed func()) *credentialSecrets {
	r := &credentialSecrets{client: client, changed: changed, log: slog.Default()}
	values := []string{"gatewayCredentials (a Gateway's tls.credentialName)"}
	for _, t := range Translators() {
		if c := t.Credentials; c != nil {
			r.labels = append(r.labels, c.Label)
			values = append(values, c.ChartValue+" ("+t.Protocol+")")
		}
	}
	r.chartValues = strings.Join(values, " or ")
	return r
}

// secretRefs are the Secrets Gateways and the translators' objects name.
func secretRefs(in *Inputs) map[types.NamespacedName]bool {
	refs := gatewayCredentialRefs(in.Gateways)
	for _, t := range Translators() {
		if t.SecretRefs == nil {
			continue
		}
		for _, r := range t.SecretRefs(in) {
			refs[r] = true
		}
	}
	return refs
}

// get returns the usable Secrets among refs. A reference read before is
// answered from memory (refresh keeps it current); a new one is read now.
// References no longer named are forgotten.
func (r *credentialSecrets) get(ctx context.Context, refs map[types.NamespacedName]bool) []*corev1.Secret {
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
func (r *credentialSecrets) refresh(ctx context.Context, every time.Duration) {
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
func (r *credentialSecrets) reread(ctx context.Context) bool {
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
func (r *credentialSecrets) read(ctx context.Context, ref types.NamespacedName, old *corev1.Secret) (s *corev1.Secret, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, secretTimeout)
	defer cancel()
	got, err := r.client.Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, true
	case apierrors.IsForbidden(err):
		// The Role from the chart's values does not name it.
		r.log.Warn("a credential Secret may not be read: list it in the chart's "+r.chartValues+" value",
			"secret", ref.String(), "err", err)
		return nil, true
	case err != nil:
		r.log.Warn("read a credential Secret", "secret", ref.String(), "err", err)
		return old, false
	case !r.labelled(got) && got.Type != corev1.SecretTypeTLS:
		// Neither a translator's credential nor a TLS one (a Gateway's
		// credentialName).
		return nil, true
	}
	return r.slim(got), true
}

// labelled reports whether a translator's credentials label marks sec.
func (r *credentialSecrets) labelled(sec *corev1.Secret) bool {
	for _, l := range r.labels {
		if sec.Labels[l] == "true" {
			return true
		}
	}
	return false
}

// slim keeps what credentials need: name, namespace, the credentials
// labels, type and data.
func (r *credentialSecrets) slim(sec *corev1.Secret) *corev1.Secret {
	out := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: sec.Name, Namespace: sec.Namespace, UID: sec.UID, ResourceVersion: sec.ResourceVersion,
	}, Type: sec.Type, Data: sec.Data}
	keep := sets.New(r.labels...)
	for k, v := range sec.Labels {
		if keep.Has(k) {
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			out.Labels[k] = v
		}
	}
	return out
}

func sameSecret(a, b *corev1.Secret) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.UID == b.UID && a.ResourceVersion == b.ResourceVersion
}
