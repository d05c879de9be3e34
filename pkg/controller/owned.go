package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// GVRs of the objects steering writes.
var (
	VirtualServiceGVR = networkingv1.SchemeGroupVersion.WithResource("virtualservices")
	ServiceGVR        = corev1.SchemeGroupVersion.WithResource("services")
)

// fieldManager is the controller's name in server-side apply.
const fieldManager = "rosetta-controller"

// OwnedCache is where OwnedWriter reads what the API server has: the
// source's informer caches.
type OwnedCache interface {
	CachedVirtualServices() []*networkingv1.VirtualService
	CachedServices() []*corev1.Service
}

// OwnedWriter makes the API server hold what the latest push wants: the
// objects the controller owns (applied with server-side apply, deleted
// when no longer wanted) and the controller's conditions on Services.
// Every replica computes them; only the leader runs Run.
type OwnedWriter struct {
	Client dynamic.Interface
	Cache  OwnedCache
	Log    *slog.Logger

	mu         sync.Mutex
	objects    OwnedObjects
	conditions map[string][]metav1.Condition
	set        bool
	notify     chan struct{}
	once       sync.Once
}

func (w *OwnedWriter) init() {
	w.once.Do(func() {
		w.notify = make(chan struct{}, 1)
		if w.Log == nil {
			w.Log = slog.Default()
		}
	})
}

// Set records what the latest push wants.
func (w *OwnedWriter) Set(objects OwnedObjects, conditions map[string][]metav1.Condition) {
	w.init()
	w.mu.Lock()
	w.objects, w.conditions, w.set = objects, conditions, true
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Run writes until ctx ends; after a failed write it tries again a second
// later. The informers' events make new pushes, which call Set.
func (w *OwnedWriter) Run(ctx context.Context) {
	w.init()
	runWrites(ctx, w.writeAll, w.notify, nil)
}

// writeAll brings the API server in line and returns how many writes failed.
func (w *OwnedWriter) writeAll(ctx context.Context) int {
	w.mu.Lock()
	objects, conditions, set := w.objects, w.conditions, w.set
	w.mu.Unlock()
	if !set {
		return 0 // nothing pushed yet: deleting everything would be wrong
	}
	failed := 0
	vss := w.Cache.CachedVirtualServices()
	svcs := w.Cache.CachedServices()
	failed += w.sync(ctx, VirtualServiceGVR, toObjects(objects.VirtualServices), toObjects(vss))
	failed += w.sync(ctx, ServiceGVR, toObjects(objects.Services), toObjects(svcs))
	failed += w.syncConditions(ctx, conditions, svcs)
	return failed
}

// ownedObject is what sync needs of an object.
type ownedObject interface {
	runtime.Object
	metav1.Object
}

func toObjects[T ownedObject](list []T) []ownedObject {
	out := make([]ownedObject, len(list))
	for i, o := range list {
		out[i] = o
	}
	return out
}

// owned reports whether the controller wrote o (and may delete it).
func owned(o metav1.Object) bool {
	l := o.GetLabels()
	return l[ManagedByLabel] == ManagedBy && l[SteeringOfLabel] != ""
}

// sync applies each wanted object whose spec hash differs from the cached
// one's, and deletes the owned objects of that kind that are not wanted.
// An object of the same name that is not the controller's is left alone
// (the index reports that conflict in status).
func (w *OwnedWriter) sync(ctx context.Context, gvr schema.GroupVersionResource, want, have []ownedObject) int {
	cached := map[string]metav1.Object{}
	for _, o := range have {
		cached[key(o)] = o
	}
	failed := 0
	wanted := map[string]bool{}
	for _, o := range want {
		k := key(o)
		wanted[k] = true
		u, hash, err := applyObject(o)
		if err != nil {
			w.Log.Error("owned object", "object", k, "err", err)
			continue
		}
		if c := cached[k]; c != nil && (!owned(c) || (c.GetAnnotations()[SpecHashAnnotation] == hash && !drifted(o, c))) {
			continue
		}
		_, err = w.Client.Resource(gvr).Namespace(o.GetNamespace()).Apply(ctx, o.GetName(), u, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
		if err != nil {
			failed++
			w.Log.Warn("apply", "resource", gvr.Resource, "object", k, "err", err)
			continue
		}
		w.Log.Info("applied", "resource", gvr.Resource, "object", k)
	}
	for _, o := range have {
		if k := key(o); !wanted[k] && owned(o) {
			failed += w.delete(ctx, gvr, o)
		}
	}
	return failed
}

func (w *OwnedWriter) delete(ctx context.Context, gvr schema.GroupVersionResource, o metav1.Object) int {
	uid := o.GetUID()
	err := w.Client.Resource(gvr).Namespace(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		w.Log.Warn("delete", "resource", gvr.Resource, "object", key(o), "err", err)
		return 1
	}
	w.Log.Info("deleted", "resource", gvr.Resource, "object", key(o))
	return 0
}

// applyObject turns a wanted object into a server-side apply body, with
// the hash of what it sets as an annotation.
func applyObject(o ownedObject) (*unstructured.Unstructured, string, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, "", fmt.Errorf("controller: convert %s: %w", key(o), err)
	}
	delete(m, "status")
	meta, _ := m["metadata"].(map[string]any)
	delete(meta, "creationTimestamp")
	js, err := json.Marshal(m)
	if err != nil {
		return nil, "", fmt.Errorf("controller: encode %s: %w", key(o), err)
	}
	sum := sha256.Sum256(js)
	hash := hex.EncodeToString(sum[:8])
	u := &unstructured.Unstructured{Object: m}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[SpecHashAnnotation] = hash
	u.SetAnnotations(ann)
	return u, hash, nil
}

// conditionPrefix is what the controller's condition types on Services
// start with; it applies only those.
const conditionPrefix = "metaprotocol.rosetta.dev/"

// syncConditions applies the controller's conditions of every Service
// whose cached ones differ, an empty list removing those it had set.
func (w *OwnedWriter) syncConditions(ctx context.Context, want map[string][]metav1.Condition, svcs []*corev1.Service) int {
	failed := 0
	for _, s := range svcs {
		have := ourConditions(s.Status.Conditions)
		conds := want[key(s)]
		if sameConditions(have, conds) {
			continue
		}
		if err := w.applyConditions(ctx, s, have, conds); err != nil {
			failed++
			w.Log.Warn("write Service conditions", "service", key(s), "err", err)
		}
	}
	return failed
}

func ourConditions(all []metav1.Condition) []metav1.Condition {
	var out []metav1.Condition
	for _, c := range all {
		if strings.HasPrefix(c.Type, conditionPrefix) {
			out = append(out, c)
		}
	}
	return out
}

func sameConditions(have, want []metav1.Condition) bool {
	return slices.EqualFunc(have, want, func(a, b metav1.Condition) bool {
		return a.Type == b.Type && a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message
	})
}

func (w *OwnedWriter) applyConditions(ctx context.Context, s *corev1.Service, have, want []metav1.Condition) error {
	now := metav1.Now()
	conds := make([]any, 0, len(want))
	for _, c := range want {
		c.LastTransitionTime = now
		for _, o := range have {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
		if err != nil {
			return err
		}
		conds = append(conds, m)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": s.Name, "namespace": s.Namespace},
		"status":   map[string]any{"conditions": conds},
	}}
	_, err := w.Client.Resource(ServiceGVR).Namespace(s.Namespace).ApplyStatus(ctx, s.Name, u, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	return err
}

// drifted reports whether someone changed what the controller applied to
// an object it owns (the hash annotation says only what it last applied):
// its labels, or the spec fields it sets.
func drifted(want ownedObject, have metav1.Object) bool {
	for k, v := range want.GetLabels() {
		if have.GetLabels()[k] != v {
			return true
		}
	}
	switch w := want.(type) {
	case *networkingv1.VirtualService:
		h, ok := have.(*networkingv1.VirtualService)
		return !ok || !proto.Equal(&w.Spec, &h.Spec)
	case *corev1.Service:
		h, ok := have.(*corev1.Service)
		return !ok || !maps.Equal(w.Spec.Selector, h.Spec.Selector) || !samePorts(w.Spec.Ports, h.Spec.Ports)
	}
	return false
}

// samePorts compares the fields of Service ports the controller sets.
func samePorts(a, b []corev1.ServicePort) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.ServicePort) bool {
		return x.Name == y.Name && x.Port == y.Port && x.TargetPort == y.TargetPort
	})
}
