package redis

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// TestSlot: the test vectors of shared/design.md section 4.
func TestSlot(t *testing.T) {
	for _, tc := range []struct {
		key  string
		slot int
	}{
		{"foo", 12182},
		{"bar", 5061},
		{"hello", 866},
		{"{user1000}.following", 3443},
		{"foo{}{bar}", 8363},
		{"foo{{bar}}zap", 4015},
		{"foo{bar}{zap}", 5061},
	} {
		if got := Slot(tc.key); got != tc.slot {
			t.Errorf("Slot(%q) = %d, want %d", tc.key, got, tc.slot)
		}
	}
}

func TestRedirection(t *testing.T) {
	for _, tc := range []struct {
		in, kind, addr string
		slot           int
	}{
		{"-MOVED 3999 127.0.0.1:6381\r\n", "MOVED", "127.0.0.1:6381", 3999},
		{"-ASK 3999 127.0.0.1:6381\r\n", "ASK", "127.0.0.1:6381", 3999},
		{"-MOVED 12 :7000\r\n", "MOVED", "10.0.0.1:7000", 12},
		{"-TRYAGAIN Multiple keys request during rehashing of slot\r\n", "TRYAGAIN", "", 0},
		{"-CROSSSLOT Keys in request don't hash to the same slot\r\n", "", "", 0},
		{"-MOVED x 1.2.3.4:5\r\n", "", "", 0},
	} {
		kind, slot, addr := redirection([]byte(tc.in), "10.0.0.1:6379")
		if kind != tc.kind || slot != tc.slot || addr != tc.addr {
			t.Errorf("redirection(%q) = %q %d %q; want %q %d %q", tc.in, kind, slot, addr, tc.kind, tc.slot, tc.addr)
		}
	}
}

// nodeFor finds the node that owns slot according to the nodes themselves.
func nodeFor(t *testing.T, nodes []*server, key string) (owner *server, others []*server) {
	for _, n := range nodes {
		if got, _ := rawCommand(n.Addr, "CLUSTER", "COUNTKEYSINSLOT", itoa(Slot(key))); got == "" {
			t.Fatal("CLUSTER COUNTKEYSINSLOT failed")
		}
		out := cli(t, n.Addr, "GET "+key+"\n")
		if !strings.HasPrefix(out, "MOVED") && !strings.HasPrefix(out, "ASK") {
			owner = n
		} else {
			others = append(others, n)
		}
	}
	if owner == nil {
		t.Fatalf("no node owns %q", key)
	}
	return owner, others
}

func myID(t *testing.T, n *server) string {
	return strings.TrimSpace(cli(t, n.Addr, "CLUSTER MYID\n"))
}

// TestCluster: a three-primary Redis Cluster from redis-cli --cluster
// create behind a proxy in cluster mode: keys go to the node owning their
// slot, multi-key commands split by slot, MOVED after CLUSTER SETSLOT is
// followed (and the map refreshed), ASK during a migration is followed with
// ASKING, and CROSSSLOT inside one command comes back as it is.
func TestCluster(t *testing.T) {
	nodes := startCluster(t)
	proxy := startProxy(t, map[string]string{OptMode: "cluster"},
		[]obj{prefixRoute("all", "", "c", nil)}, clusterConfig("c", nodes[0].Addr))
	c, cx := client(t, proxy), ctx(t)
	var keys []string
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("key:%d", i)
		keys = append(keys, k)
		must(t, c.Set(cx, k, k, 0).Err(), "SET %s", k)
	}
	for _, k := range keys[:5] {
		owner, _ := nodeFor(t, nodes, k)
		if got, _ := rawCommand(owner.Addr, "EXISTS", k); got != ":1" {
			t.Fatalf("%s is not on the node that owns slot %d", k, Slot(k))
		}
	}
	vals, err := c.MGet(cx, keys...).Result()
	must(t, err, "MGET across slots")
	for i, k := range keys {
		if vals[i] != k {
			t.Fatalf("MGET[%d] = %v, want %s", i, vals[i], k)
		}
	}
	if n, err := c.Del(cx, keys[10:]...).Result(); err != nil || n != 20 {
		t.Fatalf("DEL across slots = %d, %v", n, err)
	}
	// One command whose keys span slots on one node is the server's to refuse.
	if err := c.Do(cx, "SUNIONSTORE", "a{x}", "b{y}").Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Fatalf("SUNIONSTORE across slots: %v, want CROSSSLOT", err)
	}

	// MOVED: move key:0's slot to another node behind the proxy's back.
	k := keys[0]
	slot := itoa(Slot(k))
	from, others := nodeFor(t, nodes, k)
	to := others[0]
	fromID, toID := myID(t, from), myID(t, to)
	cli(t, to.Addr, "CLUSTER SETSLOT "+slot+" IMPORTING "+fromID+"\n")
	cli(t, from.Addr, "CLUSTER SETSLOT "+slot+" MIGRATING "+toID+"\n")
	if out := cli(t, from.Addr, fmt.Sprintf("MIGRATE 127.0.0.1 %d %s 0 5000\n", to.Port, k)); !strings.Contains(out, "OK") {
		t.Fatalf("MIGRATE: %s", out)
	}
	for _, n := range nodes {
		cli(t, n.Addr, "CLUSTER SETSLOT "+slot+" NODE "+toID+"\n")
	}
	if v, err := c.Get(cx, k).Result(); err != nil || v != k {
		t.Fatalf("GET %s after its slot moved: %q, %v", k, v, err)
	}
	must(t, c.Set(cx, k, "moved", 0).Err(), "SET after MOVED")
	if got, _ := rawCommand(to.Addr, "EXISTS", k); got != ":1" {
		t.Fatalf("%s is not on the slot's new node", k)
	}

	// ASK: start migrating key:1's slot and move only the key; the old
	// owner answers ASK for it.
	k = keys[1]
	slot = itoa(Slot(k))
	from, others = nodeFor(t, nodes, k)
	to = others[0]
	fromID, toID = myID(t, from), myID(t, to)
	cli(t, to.Addr, "CLUSTER SETSLOT "+slot+" IMPORTING "+fromID+"\n")
	cli(t, from.Addr, "CLUSTER SETSLOT "+slot+" MIGRATING "+toID+"\n")
	if out := cli(t, from.Addr, fmt.Sprintf("MIGRATE 127.0.0.1 %d %s 0 5000\n", to.Port, k)); !strings.Contains(out, "OK") {
		t.Fatalf("MIGRATE: %s", out)
	}
	if out := cli(t, from.Addr, "GET "+k+"\n"); !strings.HasPrefix(out, "ASK") {
		t.Fatalf("the old owner does not answer ASK: %s", out)
	}
	if v, err := c.Get(cx, k).Result(); err != nil || v != k {
		t.Fatalf("GET %s during its slot's migration: %q, %v", k, v, err)
	}

	// A transaction and a blocking command on pinned connections to the
	// node owning their slot.
	cmds, err := c.TxPipelined(cx, func(p goredis.Pipeliner) error {
		p.Set(cx, "{tx}a", "1", 0)
		p.Incr(cx, "{tx}a")
		return nil
	})
	must(t, err, "MULTI/EXEC in cluster mode")
	if v := cmds[1].(*goredis.IntCmd).Val(); v != 2 {
		t.Fatalf("INCR inside MULTI = %d", v)
	}
	must(t, c.RPush(cx, "{tx}q", "x").Err(), "RPUSH")
	if v, err := c.BLPop(cx, time.Second, "{tx}q").Result(); err != nil || v[1] != "x" {
		t.Fatalf("BLPOP in cluster mode = %v, %v", v, err)
	}

	clusterPubSub(t, nodes, proxy)
}

// TestSlotMapBelongsToTheCluster: a slot map is kept with its route cluster
// (codec.Upstream.ClusterState), not by the process: seeds in any order
// share it, another cluster or another proxy's cluster of the same name
// has its own, and new seeds get a fresh map that replaces the old one.
func TestSlotMapBelongsToTheCluster(t *testing.T) {
	up := newFuzzUpstream(nil)
	a := slotMapFor(up, "c", []string{"h:2", "h:1"})
	if b := slotMapFor(up, "c", []string{"h:1", "h:2"}); b != a {
		t.Fatal("the same seeds in another order got another slot map")
	}
	if slotMapFor(up, "d", []string{"h:1", "h:2"}) == a {
		t.Fatal("another cluster got the same slot map")
	}
	if slotMapFor(newFuzzUpstream(nil), "c", []string{"h:1", "h:2"}) == a {
		t.Fatal("another proxy's cluster of the same name got the same slot map")
	}
	fresh := slotMapFor(up, "c", []string{"h:3", "h:1"})
	if fresh == a || strings.Join(fresh.seeds, ",") != "h:1,h:3" {
		t.Fatalf("new seeds got the old map (%v) or seeds %q", fresh == a, fresh.seeds)
	}
	if slotMapFor(up, "c", []string{"h:3", "h:1"}) != fresh {
		t.Fatal("the new seeds did not keep their map")
	}
	if slotMapFor(up, "c", []string{"h:1", "h:1"}) == fresh {
		t.Fatal("seeds h:1 twice got the map of h:1 and h:3")
	}
	if again := slotMapFor(up, "c", []string{"h:1", "h:2"}); again == a {
		t.Fatal("the first seeds got their old map back: the cluster keeps only its current one")
	}
	if len(up.state) != 2 {
		t.Fatalf("the upstream keeps %d states, want one per cluster", len(up.state))
	}
}

// slotsUpstream answers CLUSTER SLOTS with slots (by default one node
// owning every slot), and counts how often it was asked; every other
// command gets +OK.
type slotsUpstream struct {
	*fuzzUpstream
	slots string
	loads atomic.Int32
}

func (u *slotsUpstream) SendTo(_, addr string, req *codec.Message, done codec.Done) {
	u.schedule(func() {
		if name, _ := req.Get(AttrCommand); name == "CLUSTER" {
			u.loads.Add(1)
			slots := u.slots
			if slots == "" {
				slots = "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n"
			}
			done(answer([]byte(slots)), codec.StatusOK, "")
			return
		}
		done(answer([]byte("+OK\r\n")), codec.StatusOK, "")
	})
}

// handleOne hands one command to a fresh client's codec and returns its
// answer once up has run what it was sent.
func handleOne(t *testing.T, opts codec.Options, up *slotsUpstream, args ...string) string {
	t.Helper()
	c := newCodec(t, opts, codec.PeerClient)
	req, err := c.Decode(appendCommand(nil, strArgs(args...)...))
	must(t, err, "decode")
	got := "(no answer)"
	c.Handle(req, up, codec.ReplyFunc(func(m *codec.Message) { got = string(m.Raw) }))
	up.drain()
	return got
}

// TestWholeServerCommandWithoutNodes: in cluster mode, a whole-server
// command on a cluster whose slot map lists no node (CLUSTER SLOTS answers
// an empty array while the cluster is set up; or not an array) is answered
// with an error, not left waiting on no server (FuzzHandle found it).
func TestWholeServerCommandWithoutNodes(t *testing.T) {
	for _, slots := range []string{"*0\r\n", ":1\r\n"} {
		up := &slotsUpstream{fuzzUpstream: newFuzzUpstream(nil), slots: slots}
		got := handleOne(t, codec.Options{OptMode: ModeCluster}, up, "KEYS", "*")
		if !strings.HasPrefix(got, "-NOUPSTREAM rosetta: ") {
			t.Fatalf("KEYS with CLUSTER SLOTS answering %q: %q", slots, got)
		}
	}
}

// TestSlotMapSharedByClients: clients of one cluster load its slot map once.
func TestSlotMapSharedByClients(t *testing.T) {
	up := &slotsUpstream{fuzzUpstream: newFuzzUpstream(nil)}
	for i := range 3 {
		if got := handleOne(t, codec.Options{OptMode: ModeCluster}, up, "SET", fmt.Sprint("k", i), "v"); got != "+OK\r\n" {
			t.Fatalf("client %d got %q", i, got)
		}
	}
	if n := up.loads.Load(); n != 1 {
		t.Fatalf("CLUSTER SLOTS sent %d times, want once for the three clients", n)
	}
}
