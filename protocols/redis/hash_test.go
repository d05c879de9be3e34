package redis

import (
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// TestHashKeyAttribute: hash_key is the hash tag of the first key when it
// has a non-empty one, else the whole key (the rule of Slot).
func TestHashKeyAttribute(t *testing.T) {
	for _, tc := range []struct{ args, hash string }{
		{"GET {user1}.a", "user1"},
		{"GET foo", "foo"},
		{"GET foo{}{bar}", "foo{}{bar}"},
		{"GET foo{{bar}}zap", "{bar"},
		{"MGET {u}.x y", "u"},
		{"PING", ""},
		{"PUBLISH news hi", ""}, // channels are not keys
	} {
		m := newRequest(strArgs(strings.Fields(tc.args)...)...)
		got, ok := m.Get(AttrHashKey)
		if got != tc.hash || ok != (tc.hash != "") {
			t.Errorf("%s: hash_key %q (%v), want %q", tc.args, got, ok, tc.hash)
		}
		ranged := ""
		m.Attrs.Range(func(k, v string) bool {
			if k == AttrHashKey {
				ranged = v
			}
			return true
		})
		if ranged != tc.hash {
			t.Errorf("%s: Range gives hash_key %q, want %q", tc.args, ranged, tc.hash)
		}
	}
}

// ringPool starts three servers behind one RING_HASH cluster whose route
// hashes on hash_key.
func ringPool(t *testing.T) ([]*server, string) {
	var servers []*server
	var addrs []string
	for i := 0; i < 3; i++ {
		s := startServer(t)
		servers = append(servers, s)
		addrs = append(addrs, s.Addr)
	}
	pool := clusterConfig("pool", addrs...)
	pool["lb_policy"] = "RING_HASH"
	proxy := startProxy(t, nil, []obj{prefixRoute("all", "", "pool",
		obj{"hash_policy": []obj{{"attributes": []string{AttrHashKey}}}})}, pool)
	return servers, proxy
}

// holder returns the index of the one server holding key; it fails the
// test when none or several hold it.
func holder(t *testing.T, servers []*server, key string) int {
	t.Helper()
	at := -1
	for i, s := range servers {
		got, err := rawCommand(s.Addr, "EXISTS", key)
		must(t, err, "EXISTS %s on %s", key, s.Addr)
		if got == ":1" {
			if at >= 0 {
				t.Fatalf("%s is on servers %d and %d", key, at, i)
			}
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("%s is on no server", key)
	}
	return at
}

// TestRingHashPool: three redis-servers behind a RING_HASH cluster hashed on
// hash_key. Keys spread over all three, a key always goes to the same one,
// keys sharing a hash tag share a server, and MGET/MSET/DEL/EXISTS across
// the servers split and merge in key order; transactions, blocking commands
// and subscriptions are pinned to the right server (pinnedOnPool).
func TestRingHashPool(t *testing.T) {
	servers, proxy := ringPool(t)
	c, cx := client(t, proxy), ctx(t)
	var keys []string
	perServer := make([]int, len(servers))
	where := map[string]int{}
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("key:%d", i)
		keys = append(keys, k)
		must(t, c.Set(cx, k, k, 0).Err(), "SET %s", k)
		where[k] = holder(t, servers, k)
		perServer[where[k]]++
	}
	for i, n := range perServer {
		if n == 0 {
			t.Fatalf("server %d got none of 60 keys (spread %v)", i, perServer)
		}
	}
	// The same key goes to the same server every time.
	for _, k := range keys {
		must(t, c.Set(cx, k, k+"!", 0).Err(), "SET %s again", k)
		if got := holder(t, servers, k); got != where[k] {
			t.Fatalf("%s moved from server %d to %d", k, where[k], got)
		}
		if v, err := c.Get(cx, k).Result(); err != nil || v != k+"!" {
			t.Fatalf("GET %s = %q, %v", k, v, err)
		}
	}
	// Keys sharing a hash tag share a server, however they were written.
	tagServers := map[int]bool{}
	for i := 0; i < 12; i++ {
		a, b := fmt.Sprintf("{user%d}.a", i), fmt.Sprintf("{user%d}.b", i)
		must(t, c.Set(cx, a, "A"+a, 0).Err(), "SET %s", a)
		must(t, c.MSet(cx, b, "B"+b, keys[i], "x").Err(), "MSET %s", b)
		ha, hb := holder(t, servers, a), holder(t, servers, b)
		if ha != hb {
			t.Fatalf("%s on server %d, %s on server %d", a, ha, b, hb)
		}
		tagServers[ha] = true
	}
	if len(tagServers) < 2 {
		t.Fatalf("12 hash tags all on one server")
	}
	// MGET across the three servers, tags and a missing key, in key order.
	ask := []string{"{user1}.a", keys[30], "{user1}.b", "missing", "{user7}.b", keys[59], keys[0], "{user7}.a"}
	want := []any{"A{user1}.a", keys[30] + "!", "B{user1}.b", nil, "B{user7}.b", keys[59] + "!", "x", "A{user7}.a"}
	vals, err := c.MGet(cx, ask...).Result()
	must(t, err, "MGET")
	for i := range want {
		if vals[i] != want[i] {
			t.Fatalf("MGET %v = %v, want %v", ask, vals, want)
		}
	}
	// One MGET of keys from every server is one MGET per server, not one per
	// hash tag: the split groups keys by the server Upstream.Pick names.
	before := make([]int, len(servers))
	for i, s := range servers {
		before[i] = commandCalls(t, s.Addr)["mget"]
	}
	must(t, c.MGet(cx, keys[:40]...).Err(), "MGET of 40 keys")
	holds := make([]int, len(servers))
	for _, k := range keys[:40] {
		holds[where[k]] = 1
	}
	for i, s := range servers {
		if n := commandCalls(t, s.Addr)["mget"] - before[i]; n != holds[i] {
			t.Fatalf("one MGET of 40 keys reached server %d as %d MGETs, want %d", i, n, holds[i])
		}
	}
	if n, err := c.Exists(cx, ask...).Result(); err != nil || n != 7 {
		t.Fatalf("EXISTS = %d, %v; want 7", n, err)
	}
	if n, err := c.Del(cx, keys...).Result(); err != nil || n != 60 {
		t.Fatalf("DEL of 60 keys = %d, %v", n, err)
	}
	pinnedOnPool(t, c, servers, where, keys)

}

// pinnedOnPool: on a pool hashed by key, a transaction runs on the server
// its first key hashes to (Upstream.Pick) and one whose keys hash apart is
// aborted, nothing written; BLPOP waits on the server that holds its list;
// SUBSCRIBE and PUBLISH meet on one server whatever the channel.
func pinnedOnPool(t *testing.T, c *goredis.Client, servers []*server, where map[string]int, keys []string) {
	cx := ctx(t)
	must(t, c.Set(cx, "{user1}.a", "A", 0).Err(), "SET {user1}.a")
	home := holder(t, servers, "{user1}.a")
	cmds, err := c.TxPipelined(cx, func(p goredis.Pipeliner) error {
		p.Incr(cx, "{user1}.n")
		p.Ping(cx) // no key: runs where the transaction does
		p.Get(cx, "{user1}.a")
		return nil
	})
	must(t, err, "MULTI/EXEC with keys of one hash tag")
	if n := cmds[0].(*goredis.IntCmd).Val(); n != 1 || cmds[2].(*goredis.StringCmd).Val() != "A" {
		t.Fatalf("transaction answers: %v", cmds)
	}
	if got := holder(t, servers, "{user1}.n"); got != home {
		t.Fatalf("the transaction wrote {user1}.n on server %d, its tag lives on %d", got, home)
	}
	// Two keys on different servers cannot share one transaction.
	var a, b string
	for _, k := range keys[1:] {
		if where[k] != where[keys[0]] {
			a, b = keys[0], k
			break
		}
	}
	cmds, err = c.TxPipelined(cx, func(p goredis.Pipeliner) error {
		p.Set(cx, a, "tx", 0)
		p.Set(cx, b, "tx", 0)
		return nil
	})
	if err == nil || !strings.HasPrefix(err.Error(), "EXECABORT") || !strings.Contains(fmt.Sprint(cmds[1].Err()), "CROSSSLOT") {
		t.Fatalf("a transaction over two servers: %v (%v), want EXECABORT after CROSSSLOT", err, cmds)
	}
	for _, k := range []string{a, b} {
		for _, s := range servers {
			if got, _ := rawCommand(s.Addr, "EXISTS", k); got != ":0" {
				t.Fatalf("the aborted transaction wrote %s on %s", k, s.Addr)
			}
		}
	}
	// BLPOP waits on the list's server and gets what another client pushes.
	popped := make(chan []string, 1)
	go func() {
		v, err := c.BLPop(cx, 5*time.Second, "{user1}.q").Result()
		if err != nil {
			v = []string{err.Error()}
		}
		popped <- v
	}()
	other := client(t, c.Options().Addr)
	direct := goredis.NewClient(&goredis.Options{Addr: servers[home].Addr})
	defer direct.Close()
	testutil.Eventually(t, 10*time.Second, "BLPOP to block on the server holding the list", func() bool {
		info, _ := direct.Info(cx, "clients").Result()
		return strings.Contains(info, "blocked_clients:1")
	})
	must(t, other.RPush(cx, "{user1}.q", "job").Err(), "RPUSH")
	if v := <-popped; len(v) != 2 || v[1] != "job" {
		t.Fatalf("BLPOP on a pool = %v", v)
	}
	// Subscriptions: channels that would hash to different servers as keys
	// still meet their publishers.
	sub := c.Subscribe(cx, "news", "sports", "weather")
	defer sub.Close()
	if _, err := sub.Receive(cx); err != nil {
		t.Fatalf("SUBSCRIBE on a pool: %v", err)
	}
	msgs := sub.Channel()
	for _, ch := range []string{"news", "sports", "weather"} {
		testutil.Eventually(t, 10*time.Second, "a subscriber on "+ch, func() bool {
			n, _ := other.Publish(cx, ch, "on "+ch).Result()
			return n == 1
		})
		select {
		case m := <-msgs:
			if m.Channel != ch || m.Payload != "on "+ch {
				t.Fatalf("message %s %q, want %s", m.Channel, m.Payload, ch)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no message on %s", ch)
		}
	}
}
