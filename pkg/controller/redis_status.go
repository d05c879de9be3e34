package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	redisv1 "github.com/rosetta-mesh/rosetta/pkg/apis/redis/v1alpha1"
)

// RedisStatusWriter writes the status of RedisServices and
// RedisDestinations (Index.RedisStatuses), like StatusWriter does for
// MetaRouters: only the leader runs Run; Set takes each push's statuses.
type RedisStatusWriter struct {
	Client dynamic.Interface
	// Current returns the cached object's generation and status, ok false
	// when it is gone; KubeSource.RedisObject fits.
	Current func(kind, ns, name string) (gen int64, st redisv1.Status, ok bool)
	Log     *slog.Logger

	mu      sync.Mutex
	desired map[string]RouterStatus
	notify  chan struct{}
	once    sync.Once
}

func (w *RedisStatusWriter) init() {
	w.once.Do(func() {
		w.notify = make(chan struct{}, 1)
		if w.Log == nil {
			w.Log = slog.Default()
		}
	})
}

// Set records the statuses of the latest push.
func (w *RedisStatusWriter) Set(st map[string]RouterStatus) {
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
func (w *RedisStatusWriter) Run(ctx context.Context) {
	w.init()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		if w.writeAll(ctx) > 0 {
			retry.Reset(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-w.notify:
		case <-retry.C:
		}
	}
}

func (w *RedisStatusWriter) writeAll(ctx context.Context) int {
	w.mu.Lock()
	desired := w.desired
	w.mu.Unlock()
	keys := make([]string, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	failed := 0
	for _, k := range keys {
		parts := strings.SplitN(k, "/", 3)
		if len(parts) != 3 {
			continue
		}
		kind, ns, name := parts[0], parts[1], parts[2]
		want := desired[k]
		gen, cur, ok := w.Current(kind, ns, name)
		if !ok || gen != want.Generation || sameStatus(toMetaRouterStatus(cur), want) {
			continue
		}
		if err := w.write(ctx, kind, ns, name, cur, want); err != nil {
			failed++
			w.Log.Warn("write Redis status", "object", k, "err", err)
		}
	}
	return failed
}

// toMetaRouterStatus lets sameStatus compare a Redis status (the same shape).
func toMetaRouterStatus(s redisv1.Status) v1alpha1.MetaRouterStatus {
	return v1alpha1.MetaRouterStatus{ObservedGeneration: s.ObservedGeneration, Conditions: s.Conditions}
}

func redisGVR(kind string) (schema.GroupVersionResource, bool) {
	switch kind {
	case redisServiceKind:
		return RedisServiceGVR, true
	case redisDestinationKind:
		return RedisDestinationGVR, true
	}
	return schema.GroupVersionResource{}, false
}

func (w *RedisStatusWriter) write(ctx context.Context, kind, ns, name string, cur redisv1.Status, want RouterStatus) error {
	gvr, ok := redisGVR(kind)
	if !ok {
		return fmt.Errorf("controller: no resource for kind %s", kind)
	}
	now := metav1.Now()
	conds := make([]metav1.Condition, len(want.Conditions))
	for i, c := range want.Conditions {
		c.LastTransitionTime = now
		for _, o := range cur.Conditions {
			if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		if len(c.Message) > 32000 {
			c.Message = c.Message[:32000]
		}
		conds[i] = c
	}
	patch, err := json.Marshal(map[string]any{"status": redisv1.Status{ObservedGeneration: want.Generation, Conditions: conds}})
	if err != nil {
		return fmt.Errorf("controller: status patch: %w", err)
	}
	_, err = w.Client.Resource(gvr).Namespace(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "rosetta-controller"}, "status")
	if err != nil {
		return fmt.Errorf("controller: patch status of %s %s/%s: %w", kind, ns, name, err)
	}
	return nil
}

// RedisObject returns a cached Redis object's generation and status; it
// is RedisStatusWriter.Current for the Kubernetes source.
func (s *KubeSource) RedisObject(kind, ns, name string) (int64, redisv1.Status, bool) {
	switch kind {
	case redisServiceKind:
		o, ok, err := s.redis.services.GetByKey(ns + "/" + name)
		if rs, is := o.(*redisv1.RedisService); err == nil && ok && is {
			return rs.Generation, rs.Status, true
		}
	case redisDestinationKind:
		o, ok, err := s.redis.dests.GetByKey(ns + "/" + name)
		if rd, is := o.(*redisv1.RedisDestination); err == nil && ok && is {
			return rd.Generation, rd.Status, true
		}
	}
	return 0, redisv1.Status{}, false
}
