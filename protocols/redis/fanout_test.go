package redis

import (
	"slices"
	"strconv"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// setDirect writes keys on a server without the proxy.
func setDirect(t *testing.T, s *server, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if got, err := rawCommand(s.Addr, "SET", k, "v"); err != nil || got != "+OK" {
			t.Fatalf("SET %s on %s: %q, %v", k, s.Addr, got, err)
		}
	}
}

// dbsize is a server's DBSIZE, asked directly.
func dbsize(t *testing.T, s *server) string {
	t.Helper()
	got, err := rawCommand(s.Addr, "DBSIZE")
	must(t, err, "DBSIZE on %s", s.Addr)
	return got
}

// TestWholeServerCommandsOnAPool: one route over a cluster of two servers.
// FLUSHALL empties both, KEYS lists both servers' keys, DBSIZE adds their
// counts, RANDOMKEY finds a key wherever it is, SCRIPT LOAD reaches both;
// SCAN and INFO, whose answer from one server would pass for both, are
// refused; FLUSHALL queued in a transaction aborts it.
func TestWholeServerCommandsOnAPool(t *testing.T) {
	a, b := startServer(t), startServer(t)
	proxy := startProxy(t, nil, []obj{prefixRoute("all", "", "pool", nil)}, clusterConfig("pool", a.Addr, b.Addr))
	setDirect(t, a, "a1", "a2")
	setDirect(t, b, "b1", "b2", "b3")
	c, cx := client(t, proxy), ctx(t)

	if n, err := c.DBSize(cx).Result(); err != nil || n != 5 {
		t.Fatalf("DBSIZE = %d, %v; want 5", n, err)
	}
	keys, err := c.Keys(cx, "*").Result()
	must(t, err, "KEYS")
	slices.Sort(keys)
	if want := []string{"a1", "a2", "b1", "b2", "b3"}; !slices.Equal(keys, want) {
		t.Fatalf("KEYS * = %v, want %v", keys, want)
	}
	// Only b has keys b*: a random key must come from b, not a null from a.
	must(t, c.FlushDB(cx).Err(), "FLUSHDB")
	setDirect(t, b, "b1")
	for range 10 {
		if k, err := c.RandomKey(cx).Result(); err != nil || k != "b1" {
			t.Fatalf("RANDOMKEY with one key on server b = %q, %v; want b1", k, err)
		}
	}
	sha, err := c.ScriptLoad(cx, "return 1").Result()
	must(t, err, "SCRIPT LOAD")
	for _, s := range []*server{a, b} {
		if got, _ := rawCommand(s.Addr, "SCRIPT", "EXISTS", sha); got != "*1" {
			t.Fatalf("SCRIPT EXISTS on %s: %q", s.Addr, got)
		}
	}
	if ok, err := c.ScriptExists(cx, sha, "0000000000000000000000000000000000000000").Result(); err != nil || !slices.Equal(ok, []bool{true, false}) {
		t.Fatalf("SCRIPT EXISTS = %v, %v; want [true false]", ok, err)
	}
	for name, err := range map[string]error{"SCAN": c.Scan(cx, 0, "", 0).Err(), "INFO": c.Info(cx).Err()} {
		want := "ERR rosetta: " + name + " is served only when the routes reach one server; they reach 2"
		if err == nil || err.Error() != want {
			t.Fatalf("%s = %v, want %s", name, err, want)
		}
	}
	_, err = c.TxPipelined(cx, func(p goredis.Pipeliner) error {
		p.FlushAll(cx)
		return nil
	})
	if want := "EXECABORT Transaction discarded because of previous errors."; err == nil || err.Error() != want {
		t.Fatalf("FLUSHALL in a transaction over two servers: %v, want %s", err, want)
	}
	if got := dbsize(t, b); got != ":1" {
		t.Fatalf("server b after the aborted transaction: DBSIZE %s, want :1", got)
	}

	setDirect(t, a, "a1")
	if got, err := c.FlushAll(cx).Result(); err != nil || got != "OK" {
		t.Fatalf("FLUSHALL = %q, %v", got, err)
	}
	for _, s := range []*server{a, b} {
		if got := dbsize(t, s); got != ":0" {
			t.Fatalf("after FLUSHALL through the proxy %s has DBSIZE %s", s.Addr, got)
		}
	}
}

// TestWholeServerCommandsAcrossRoutes: with routes by key prefix the proxy
// cannot tell every server the routes reach, so FLUSHALL, KEYS and DBSIZE
// are refused and no server is flushed.
func TestWholeServerCommandsAcrossRoutes(t *testing.T) {
	a, b, proxy := twoServers(t, nil, nil)
	setDirect(t, a, "a1")
	setDirect(t, b, "b:1")
	c, cx := client(t, proxy), ctx(t)
	for name, err := range map[string]error{
		"FLUSHALL": c.FlushAll(cx).Err(), "KEYS": c.Keys(cx, "*").Err(), "DBSIZE": c.DBSize(cx).Err(),
	} {
		want := "ERR rosetta: " + name + " acts on whole servers, and the routes send keys to more than one place, " +
			"so the proxy cannot tell every server they reach; send it to the servers directly"
		if err == nil || err.Error() != want {
			t.Fatalf("%s = %v, want %s", name, err, want)
		}
	}
	for _, s := range []*server{a, b} {
		if got := dbsize(t, s); got != ":1" {
			t.Fatalf("%s: DBSIZE %s after a refused FLUSHALL, want :1", s.Addr, got)
		}
	}
}

// TestWholeServerCommandsOnOneServer: a route to a single server passes
// every whole-server command through, SCAN and INFO included.
func TestWholeServerCommandsOnOneServer(t *testing.T) {
	a := startServer(t)
	proxy := startProxy(t, nil, []obj{prefixRoute("all", "", "a", nil)}, clusterConfig("a", a.Addr))
	setDirect(t, a, "k")
	c, cx := client(t, proxy), ctx(t)
	if keys, cursor, err := c.Scan(cx, 0, "", 0).Result(); err != nil || !slices.Equal(keys, []string{"k"}) || cursor != 0 {
		t.Fatalf("SCAN 0 = %v, %d, %v; want [k] 0", keys, cursor, err)
	}
	if n, err := c.DBSize(cx).Result(); err != nil || n != 1 {
		t.Fatalf("DBSIZE = %d, %v; want 1", n, err)
	}
}

// TestWholeServerCommandsInCluster: in cluster mode FLUSHALL, KEYS and
// DBSIZE go to every primary of the slot map.
func TestWholeServerCommandsInCluster(t *testing.T) {
	nodes := startCluster(t)
	proxy := startProxy(t, map[string]string{OptMode: "cluster"}, []obj{prefixRoute("all", "", "c", nil)},
		clusterConfig("c", nodes[0].Addr))
	c, cx := client(t, proxy), ctx(t)
	var want []string
	for i := range 30 {
		k := "k" + strconv.Itoa(i)
		must(t, c.Set(cx, k, "v", 0).Err(), "SET %s", k)
		want = append(want, k)
	}
	for _, n := range nodes {
		if got := dbsize(t, n); got == ":0" || got == ":30" {
			t.Fatalf("node %s holds %s of 30 keys: the test needs them spread", n.Addr, got)
		}
	}
	if n, err := c.DBSize(cx).Result(); err != nil || n != 30 {
		t.Fatalf("DBSIZE = %d, %v; want 30", n, err)
	}
	keys, err := c.Keys(cx, "*").Result()
	must(t, err, "KEYS")
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Fatalf("KEYS * = %v, want %v", keys, want)
	}
	must(t, c.FlushAll(cx).Err(), "FLUSHALL")
	for _, n := range nodes {
		if got := dbsize(t, n); got != ":0" {
			t.Fatalf("after FLUSHALL through the proxy node %s has DBSIZE %s", n.Addr, got)
		}
	}
}
