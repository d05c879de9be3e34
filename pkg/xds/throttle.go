package xds

import (
	"sync"
	"time"
)

// Proxies that connect together (all of them, when the controller
// restarts) are given their first config a bounded number at a time:
// each one's first responses stay in memory, encoded in gRPC's buffers,
// until the proxy has read them, and a thousand at once raised the
// controller's RSS by hundreds of MB for good. Istio's pilot bounds its
// concurrent pushes alike (PILOT_PUSH_THROTTLE, 100). A proxy holds its
// slot until it has acknowledged every type it was sent, it leaves, or
// syncHold passes.

// DefaultMaxSyncing is Options.MaxSyncing's default.
const DefaultMaxSyncing = 100

// syncHold is the longest a proxy holds a slot, and the longest one
// waits for a slot before it is served anyway.
const syncHold = 10 * time.Second

// syncSlot is a proxy's slot among those syncing; done gives it back,
// once.
type syncSlot struct {
	once    sync.Once
	release func()
	timer   *time.Timer
}

// acquireSync waits for a slot, at most syncHold; nil when none came.
func (s *Server) acquireSync() *syncSlot {
	wait := time.NewTimer(syncHold)
	defer wait.Stop()
	select {
	case s.syncSlots <- struct{}{}:
	case <-wait.C:
		return nil
	}
	sl := &syncSlot{release: func() { <-s.syncSlots }}
	sl.timer = time.AfterFunc(syncHold, sl.done)
	return sl
}

func (sl *syncSlot) done() {
	if sl == nil {
		return
	}
	sl.once.Do(func() {
		if sl.timer != nil {
			sl.timer.Stop()
		}
		sl.release()
	})
}

// synced reports whether the proxy has acknowledged the version it
// holds of every type it has resources of. Callers hold s.mu.
func (n *nodeState) synced() bool {
	if n.gen == nil {
		return false
	}
	for _, t := range TypeURLs {
		if n.count(t) > 0 && n.acked[t] != n.versions[t] {
			return false
		}
	}
	return true
}

// endSync gives back the proxy's slot once it is synced, or when gone.
// Callers hold s.mu.
func (n *nodeState) endSync(gone bool) {
	if n.syncing != nil && (gone || n.synced()) {
		n.syncing.done()
		n.syncing = nil
	}
}
