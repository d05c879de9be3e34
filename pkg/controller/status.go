package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// StatusObject is a cached object whose status a StatusWriter keeps: where
// it lives and the status it has now. Every Rosetta kind's status has the
// MetaRouter's shape (observedGeneration and conditions).
type StatusObject struct {
	GVR        schema.GroupVersionResource
	Namespace  string
	Name       string
	Generation int64
	Status     v1alpha1.MetaRouterStatus
}

// StatusWriter writes the statuses of one family of objects (MetaRouters;
// authorization policies; the translators' kinds). Every replica computes statuses;
// only the leader runs Run, so writes do not race.
type StatusWriter struct {
	Client dynamic.Interface
	// Current returns the cached object a status key names (the keys of
	// the statuses given to Set), ok false when it is gone.
	Current func(key string) (StatusObject, bool)
	// Kind names the objects in logs.
	Kind string
	Log  *slog.Logger
	// Amend, when set, adjusts the statuses given to Set before they are
	// written: the xDS server adds the refusals of its proxies, which
	// arrive after the push.
	Amend func(map[string]RouterStatus) map[string]RouterStatus
	// Refresh, when set, makes Run write again: what Amend adds changed.
	Refresh <-chan struct{}

	mu      sync.Mutex
	desired map[string]RouterStatus
	notify  chan struct{}
	once    sync.Once
}

func (w *StatusWriter) init() {
	w.once.Do(func() {
		w.notify = make(chan struct{}, 1)
		if w.Log == nil {
			w.Log = slog.Default()
		}
	})
}

// Set records the statuses of the latest push.
func (w *StatusWriter) Set(st map[string]RouterStatus) {
	w.init()
	w.mu.Lock()
	w.desired = st
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Run writes statuses until ctx ends; a failed write is retried a second later.
func (w *StatusWriter) Run(ctx context.Context) {
	w.init()
	runWrites(ctx, w.writeAll, w.notify, w.Refresh)
}

// runWrites calls writeAll (which returns how many writes failed) at once
// and whenever wake or refresh signals, until ctx ends; after a failure it
// tries again a second later.
func runWrites(ctx context.Context, writeAll func(context.Context) int, wake <-chan struct{}, refresh <-chan struct{}) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		if writeAll(ctx) > 0 {
			retry.Reset(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-refresh:
		case <-retry.C:
		}
	}
}

// writeAll patches every MetaRouter whose status differs and returns how
// many writes failed.
func (w *StatusWriter) writeAll(ctx context.Context) int {
	w.mu.Lock()
	desired := w.desired
	w.mu.Unlock()
	if w.Amend != nil {
		desired = w.Amend(desired)
	}
	keys := make([]string, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	failed := 0
	for _, k := range keys {
		cur, ok := w.Current(k)
		want := desired[k]
		// A status computed for another generation waits for the push
		// that follows the object's update.
		if !ok || cur.Generation != want.Generation || sameStatus(cur.Status, want) {
			continue
		}
		if err := w.write(ctx, cur, want); err != nil {
			failed++
			w.Log.Warn("write status", "kind", w.Kind, "object", k, "err", err)
		}
	}
	return failed
}

func sameStatus(cur v1alpha1.MetaRouterStatus, want RouterStatus) bool {
	if cur.ObservedGeneration != want.Generation || len(cur.Conditions) != len(want.Conditions) {
		return false
	}
	for i, c := range want.Conditions {
		o := cur.Conditions[i]
		if o.Type != c.Type || o.Status != c.Status || o.Reason != c.Reason || o.Message != c.Message || o.ObservedGeneration != c.ObservedGeneration {
			return false
		}
	}
	return true
}

func (w *StatusWriter) write(ctx context.Context, cur StatusObject, want RouterStatus) error {
	now := metav1.Now()
	conds := make([]metav1.Condition, len(want.Conditions))
	for i, c := range want.Conditions {
		c.LastTransitionTime = now
		for _, o := range cur.Status.Conditions {
			if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		if len(c.Message) > 32000 {
			c.Message = c.Message[:32000]
		}
		conds[i] = c
	}
	patch, err := json.Marshal(map[string]any{"status": v1alpha1.MetaRouterStatus{ObservedGeneration: want.Generation, Conditions: conds}})
	if err != nil {
		return fmt.Errorf("controller: status patch: %w", err)
	}
	_, err = w.Client.Resource(cur.GVR).Namespace(cur.Namespace).Patch(ctx, cur.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "rosetta-controller"}, "status")
	if err != nil {
		return fmt.Errorf("controller: patch status of %s %s/%s: %w", w.Kind, cur.Namespace, cur.Name, err)
	}
	return nil
}
