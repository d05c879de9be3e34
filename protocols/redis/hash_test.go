package redis

import (
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
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
// the servers split and merge in key order. A transaction is refused with a
// clear error rather than pinned to a server the key may not hash to.
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
	if n, err := c.Exists(cx, ask...).Result(); err != nil || n != 7 {
		t.Fatalf("EXISTS = %d, %v; want 7", n, err)
	}
	if n, err := c.Del(cx, keys...).Result(); err != nil || n != 60 {
		t.Fatalf("DEL of 60 keys = %d, %v", n, err)
	}
	// Transactions and blocking commands cannot be pinned to the right
	// server: a clear error, and nothing written.
	cmds, err := c.TxPipelined(cx, func(p goredis.Pipeliner) error {
		p.Incr(cx, "{user1}.n")
		return nil
	})
	const refusal = "not supported on cluster pool, a pool of 3 servers"
	if err == nil || !strings.HasPrefix(err.Error(), "EXECABORT") || len(cmds) != 1 || !strings.Contains(fmt.Sprint(cmds[0].Err()), refusal) {
		t.Fatalf("MULTI/EXEC on a pool: %v (%v), want EXECABORT after a clear refusal", err, cmds)
	}
	if err := c.BLPop(cx, time.Second, "{user1}.q").Err(); err == nil || !strings.Contains(err.Error(), refusal) {
		t.Fatalf("BLPOP on a pool: %v, want a clear refusal", err)
	}
	for _, s := range servers {
		if got, _ := rawCommand(s.Addr, "EXISTS", "{user1}.n"); got != ":0" {
			t.Fatalf("the refused transaction wrote {user1}.n on %s", s.Addr)
		}
	}
}
