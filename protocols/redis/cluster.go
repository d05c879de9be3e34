package redis

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Redirections followed per request, and TRYAGAIN backoff.
const (
	maxRedirects  = 5
	tryAgainDelay = 20 * time.Millisecond
)

// slotMap is a Redis Cluster's slot owners, as loaded from its seeds (the
// route cluster's endpoints). It is kept with the route cluster
// (slotMapFor), so every client connection that talks to the cluster shares
// it.
type slotMap struct {
	cluster string
	seeds   []string // sorted

	mu      sync.Mutex
	owners  []string // by slot; nil until the first load
	loading bool
	waiters []func(error)
	// replicas lists each primary's replicas, from the last load.
	replicas map[string][]string
	next     atomic.Uint32 // spreads reads over a shard's replicas
}

// clusterSlots is what a route cluster keeps for Redis
// (codec.Upstream.ClusterState, under clusterSlotsKey): the slot map of
// its current seeds. It lives as long as the cluster does in the proxy's
// config, across updates that keep it, and goes with it.
type clusterSlots struct {
	cur atomic.Pointer[slotMap]
}

// clusterSlotsKey is the key of clusterSlots in a cluster's state.
type clusterSlotsKey struct{}

// slotMapFor returns the slot map of cluster, whose endpoints are seeds.
// When the seeds change (a config update gave the cluster other
// endpoints), the cluster gets a fresh map, loaded from the new seeds: the
// old one may name nodes that are gone. The old map serves the requests
// that already hold it, and then nothing keeps it.
func slotMapFor(up codec.Upstream, cluster string, seeds []string) *slotMap {
	cs := up.ClusterState(cluster, clusterSlotsKey{}, func() any { return &clusterSlots{} }).(*clusterSlots)
	for {
		sm := cs.cur.Load()
		if sm != nil && sm.seededBy(seeds) {
			return sm
		}
		sorted := append([]string(nil), seeds...)
		sort.Strings(sorted)
		fresh := &slotMap{cluster: cluster, seeds: sorted}
		if cs.cur.CompareAndSwap(sm, fresh) {
			return fresh
		}
	}
}

// seededBy says whether seeds, in any order, are the map's seeds (as sets).
// It runs for every request in cluster mode, so it does not allocate.
func (sm *slotMap) seededBy(seeds []string) bool {
	if len(seeds) != len(sm.seeds) {
		return false
	}
	for _, s := range seeds {
		if i := sort.SearchStrings(sm.seeds, s); i == len(sm.seeds) || sm.seeds[i] != s {
			return false
		}
	}
	for _, s := range sm.seeds { // seeds may repeat one and lack another
		if !slices.Contains(seeds, s) {
			return false
		}
	}
	return true
}

// owner returns the address serving slot (slot < 0: any node), loading the
// map first when needed; fn runs once the answer is known.
func (sm *slotMap) owner(up codec.Upstream, slot int, fn func(string, error)) {
	sm.mu.Lock()
	if sm.owners != nil {
		addr := sm.pickLocked(slot)
		sm.mu.Unlock()
		fn(addr, nil)
		return
	}
	sm.waiters = append(sm.waiters, func(err error) {
		if err != nil {
			fn("", err)
			return
		}
		sm.mu.Lock()
		addr := sm.pickLocked(slot)
		sm.mu.Unlock()
		fn(addr, nil)
	})
	start := !sm.loading
	sm.loading = true
	sm.mu.Unlock()
	if start {
		sm.load(up, 0)
	}
}

// replica returns a replica of primary, taking them in turn; "" when the
// last load listed none.
func (sm *slotMap) replica(primary string) string {
	sm.mu.Lock()
	reps := sm.replicas[primary]
	sm.mu.Unlock()
	if len(reps) == 0 {
		return ""
	}
	return reps[int(sm.next.Add(1))%len(reps)]
}

func (sm *slotMap) pickLocked(slot int) string {
	if slot >= 0 && sm.owners[slot] != "" {
		return sm.owners[slot]
	}
	return sm.seeds[0]
}

// refresh reloads the map in the background (after a MOVED).
func (sm *slotMap) refresh(up codec.Upstream) {
	sm.mu.Lock()
	start := !sm.loading
	sm.loading = true
	sm.mu.Unlock()
	if start {
		sm.load(up, 0)
	}
}

// moved records a MOVED answer's new owner at once, before the reload.
func (sm *slotMap) moved(slot int, addr string) {
	sm.mu.Lock()
	if sm.owners != nil && slot >= 0 && slot < slotCount {
		sm.owners[slot] = addr
	}
	sm.mu.Unlock()
}

// load asks the seeds in turn for CLUSTER SLOTS.
func (sm *slotMap) load(up codec.Upstream, i int) {
	seed := sm.seeds[i]
	up.SendTo(sm.cluster, seed, newRequest([]byte("CLUSTER"), []byte("SLOTS")), func(resp *codec.Message, st codec.Status, detail string) {
		var owners []string
		var replicas map[string][]string
		var err error
		switch {
		case resp == nil:
			err = errors.New(detail)
		case resp.Status != codec.StatusOK:
			err = errors.New(firstLine(resp.Raw))
		default:
			owners, replicas, err = parseSlots(resp.Raw, seed)
		}
		if err != nil && i+1 < len(sm.seeds) {
			sm.load(up, i+1)
			return
		}
		sm.loaded(owners, replicas, err)
	})
}

func (sm *slotMap) loaded(owners []string, replicas map[string][]string, err error) {
	sm.mu.Lock()
	if err == nil {
		sm.owners, sm.replicas = owners, replicas
	}
	sm.loading = false
	waiters := sm.waiters
	sm.waiters = nil
	sm.mu.Unlock()
	if err != nil {
		err = codec.Errorf(Name, codec.ErrUnsupported, "loading the slot map of cluster %s: %v", sm.cluster, err)
	}
	for _, w := range waiters {
		w(err)
	}
}

// parseSlots reads a CLUSTER SLOTS answer: [start, end, [host, port, id, ...],
// replicas...] per range, into the owner of every slot and the replicas of
// every primary. A node with no host known is on the seed's host.
func parseSlots(raw []byte, seed string) ([]string, map[string][]string, error) {
	v, _, err := parseValue(raw)
	if err != nil {
		return nil, nil, err
	}
	if v.t != typeArray || v.null {
		return nil, nil, errors.New("CLUSTER SLOTS: the answer is not an array")
	}
	seedHost, _, _ := net.SplitHostPort(seed)
	owners := make([]string, slotCount)
	replicas := map[string][]string{}
	for _, r := range v.elems {
		if len(r.elems) < 3 {
			return nil, nil, errors.New("CLUSTER SLOTS: short range entry")
		}
		start, end := r.elems[0].n, r.elems[1].n
		if start < 0 || end >= slotCount || start > end {
			return nil, nil, errors.New("CLUSTER SLOTS: bad range")
		}
		addr, ok := nodeAddr(r.elems[2], seedHost)
		if !ok {
			return nil, nil, errors.New("CLUSTER SLOTS: short node entry")
		}
		for s := start; s <= end; s++ {
			owners[s] = addr
		}
		if _, seen := replicas[addr]; seen {
			continue // a primary serving several ranges lists the same replicas
		}
		var reps []string
		for _, n := range r.elems[3:] {
			if a, ok := nodeAddr(n, seedHost); ok {
				reps = append(reps, a)
			}
		}
		replicas[addr] = reps
	}
	return owners, replicas, nil
}

// nodeAddr reads a node entry of CLUSTER SLOTS: [host, port, id, ...].
func nodeAddr(n value, seedHost string) (string, bool) {
	if len(n.elems) < 2 {
		return "", false
	}
	host := n.elems[0].text()
	if host == "" || host == "?" {
		host = seedHost
	}
	return net.JoinHostPort(host, n.elems[1].text()), true
}

// requestSlot is the slot of a request's first key, -1 without keys.
func requestSlot(req *codec.Message) int {
	if k, ok := req.Get(AttrKey); ok {
		return Slot(k)
	}
	return -1
}

// clusterOwner finds the node serving req, waiting for the slot map. It
// blocks, so only a goroutine of the proxy's own (a pinned connection's
// opener) calls it.
func clusterOwner(req *codec.Message, up codec.Upstream, cluster string) (string, error) {
	eps := up.Endpoints(cluster)
	if len(eps) == 0 {
		return "", codec.Errorf(Name, codec.ErrUnsupported, "cluster %s has no seed endpoint", cluster)
	}
	ch := make(chan struct {
		addr string
		err  error
	}, 1)
	slotMapFor(up, cluster, eps).owner(up, requestSlot(req), func(addr string, err error) {
		ch <- struct {
			addr string
			err  error
		}{addr, err}
	})
	r := <-ch
	return r.addr, r.err
}

// clusterSend sends req to the node owning its slot, following MOVED (with a
// map refresh), ASK (ASKING first, on a connection of its own) and TRYAGAIN
// (after a pause). CROSSSLOT and every other answer go back as they are.
// With replicaReads, a read-only command goes to a replica of the slot's
// shard instead, when it has one.
func clusterSend(req *codec.Message, up codec.Upstream, replicaReads bool, done codec.Done) {
	cluster, _, ok := up.Route(req)
	if !ok {
		done(nil, codec.StatusNoRoute, "rosetta: no route matched the request")
		return
	}
	eps := up.Endpoints(cluster)
	if len(eps) == 0 {
		done(nil, codec.StatusNoUpstream, "rosetta: no seed endpoint in cluster "+cluster)
		return
	}
	sm := slotMapFor(up, cluster, eps)
	slot := requestSlot(req)
	sm.owner(up, slot, func(addr string, err error) {
		if err != nil {
			done(nil, codec.StatusNoUpstream, "rosetta: "+err.Error())
			return
		}
		if replicaReads && slot >= 0 && readOnly(req) {
			if r := sm.replica(addr); r != "" {
				replicaTry(req, up, sm, addr, r, done)
				return
			}
		}
		clusterTry(req, up, sm, addr, 0, done)
	})
}

// replicaTry sends a read to replica; when the replica cannot be reached (no
// answer at all, as opposed to an error answer) the read goes to the primary.
// A replica that does not serve the slot answers MOVED, which is followed.
func replicaTry(req *codec.Message, up codec.Upstream, sm *slotMap, primary, replica string, done codec.Done) {
	clusterTry(req, up, sm, replica, 0, func(resp *codec.Message, st codec.Status, detail string) {
		if resp != nil {
			done(resp, st, detail)
			return
		}
		sm.refresh(up) // the replica may have left the cluster
		clusterTry(req, up, sm, primary, 0, done)
	})
}

// readOnly says whether a command only reads, so a replica may serve it.
func readOnly(req *codec.Message) bool {
	cm, ok := req.Private.(*command)
	// PUBLISH is marked read only so that mirrors skip it; it is not a read.
	return ok && cm.spec != nil && cm.spec.flags&flagRead != 0 && cm.name != "PUBLISH"
}

func clusterTry(req *codec.Message, up codec.Upstream, sm *slotMap, addr string, n int, done codec.Done) {
	up.SendTo(sm.cluster, addr, req, func(resp *codec.Message, st codec.Status, detail string) {
		if resp == nil || resp.Status == codec.StatusOK || n >= maxRedirects {
			done(resp, st, detail)
			return
		}
		kind, slot, to := redirection(resp.Raw, addr)
		switch kind {
		case "MOVED":
			sm.moved(slot, to)
			sm.refresh(up)
			clusterTry(req, up, sm, to, n+1, done)
		case "ASK":
			go askTo(req, up, sm.cluster, to, done)
		case "TRYAGAIN":
			time.AfterFunc(tryAgainDelay<<n, func() {
				sm.owner(up, requestSlot(req), func(a string, err error) {
					if err != nil {
						a = addr
					}
					clusterTry(req, up, sm, a, n+1, done)
				})
			})
		default:
			done(resp, st, detail)
		}
	})
}

// redirection parses "-MOVED <slot> <host:port>", "-ASK ..." and "-TRYAGAIN
// ...". A redirection with an empty host means the host of the node that
// answered.
func redirection(raw []byte, from string) (kind string, slot int, addr string) {
	line := firstLine(raw)
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", 0, ""
	}
	switch f[0] {
	case "TRYAGAIN":
		return f[0], 0, ""
	case "MOVED", "ASK":
		if len(f) != 3 {
			return "", 0, ""
		}
		s, err := strconv.Atoi(f[1])
		if err != nil {
			return "", 0, ""
		}
		addr = f[2]
		if strings.HasPrefix(addr, ":") {
			host, _, _ := net.SplitHostPort(from)
			addr = net.JoinHostPort(host, addr[1:])
		}
		return f[0], s, addr
	}
	return "", 0, ""
}

// askTo sends ASKING and then req to addr on one connection, as the ASK
// redirection requires; the pooled connections cannot promise that two
// commands share a connection, so it dials one of its own for the pair.
func askTo(req *codec.Message, up codec.Upstream, cluster, addr string, done codec.Done) {
	var once sync.Once
	finish := func(resp *codec.Message, st codec.Status, detail string) {
		once.Do(func() { done(resp, st, detail) })
	}
	p := openPinned(up, target{cluster: cluster, addr: func() (string, error) { return addr, nil }})
	p.send(newRequest([]byte("ASKING")), func(m *codec.Message) {
		if m.Status != codec.StatusOK && !bytes.HasPrefix(m.Raw, []byte("+OK")) {
			finish(m, m.Status, "")
		}
	})
	p.send(req, p.closeAfter(func(m *codec.Message) { finish(m, m.Status, "") }))
}
