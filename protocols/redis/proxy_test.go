package redis

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// twoServers starts servers a and b and a proxy sending keys with prefix b:
// to b and everything else to a.
func twoServers(t *testing.T, opts map[string]string, bRoute obj) (a, b *server, proxy string) {
	a, b = startServer(t), startServer(t)
	proxy = startProxy(t, opts,
		[]obj{prefixRoute("b", "b:", "b", bRoute), prefixRoute("rest", "", "a", nil)},
		clusterConfig("a", a.Addr), clusterConfig("b", b.Addr))
	return a, b, proxy
}

func client(t *testing.T, addr string) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: addr}) // defaults: RESP3, CLIENT SETINFO
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestPrefixRoutingAndSplit: go-redis with its defaults (HELLO 3, CLIENT
// SETINFO) through the proxy; keys land on the server their prefix names,
// and MGET/MSET/DEL/EXISTS/TOUCH/UNLINK split across both and merge in key
// order.
func TestPrefixRoutingAndSplit(t *testing.T) {
	a, b, proxy := twoServers(t, nil, nil)
	c, cx := client(t, proxy), ctx(t)
	must(t, c.Set(cx, "a:1", "one", 0).Err(), "SET a:1")
	must(t, c.Set(cx, "b:1", "two", 0).Err(), "SET b:1")
	if got, _ := rawCommand(a.Addr, "GET", "a:1"); got != "$3" {
		t.Fatalf("a:1 on server a: %q", got)
	}
	if got, _ := rawCommand(b.Addr, "EXISTS", "b:1"); got != ":1" {
		t.Fatalf("b:1 on server b: %q", got)
	}
	if got, _ := rawCommand(a.Addr, "EXISTS", "b:1"); got != ":0" {
		t.Fatalf("b:1 leaked to server a: %q", got)
	}
	must(t, c.MSet(cx, "b:2", "B2", "a:2", "A2", "b:3", "B3").Err(), "MSET")
	vals, err := c.MGet(cx, "a:1", "b:1", "missing", "b:2", "a:2", "b:3").Result()
	must(t, err, "MGET")
	want := []any{"one", "two", nil, "B2", "A2", "B3"}
	for i := range want {
		if vals[i] != want[i] {
			t.Fatalf("MGET = %v, want %v", vals, want)
		}
	}
	if n, err := c.Exists(cx, "a:1", "b:1", "b:9", "a:2").Result(); err != nil || n != 3 {
		t.Fatalf("EXISTS = %d, %v; want 3", n, err)
	}
	if n, err := c.Touch(cx, "a:1", "b:1").Result(); err != nil || n != 2 {
		t.Fatalf("TOUCH = %d, %v; want 2", n, err)
	}
	if n, err := c.Del(cx, "a:1", "b:1", "b:nope").Result(); err != nil || n != 2 {
		t.Fatalf("DEL = %d, %v; want 2", n, err)
	}
	if n, err := c.Unlink(cx, "a:2", "b:2").Result(); err != nil || n != 2 {
		t.Fatalf("UNLINK = %d, %v; want 2", n, err)
	}
	if got, _ := rawCommand(b.Addr, "GET", "b:3"); got != "$2" {
		t.Fatalf("b:3 from MSET on server b: %q", got)
	}
	// Hashes come back as RESP2 arrays from the servers; go-redis reads them.
	must(t, c.HSet(cx, "b:h", "f", "v").Err(), "HSET")
	if m, err := c.HGetAll(cx, "b:h").Result(); err != nil || m["f"] != "v" {
		t.Fatalf("HGETALL = %v, %v", m, err)
	}
	// EVAL goes by its first key.
	if v, err := c.Eval(cx, "return redis.call('GET', KEYS[1])", []string{"b:3"}).Result(); err != nil || v != "B3" {
		t.Fatalf("EVAL = %v, %v", v, err)
	}
	// Pipelines keep their order across destinations.
	pipe := c.Pipeline()
	g1 := pipe.Get(cx, "b:3")
	pipe.Set(cx, "a:p", "x", 0)
	g2 := pipe.Get(cx, "a:p")
	_, err = pipe.Exec(cx)
	must(t, err, "pipeline")
	if g1.Val() != "B3" || g2.Val() != "x" {
		t.Fatalf("pipeline: %q %q", g1.Val(), g2.Val())
	}
}

// TestLocalCommandsWithRedisCLI: redis-cli with commands piped in.
func TestLocalCommandsWithRedisCLI(t *testing.T) {
	_, _, proxy := twoServers(t, map[string]string{OptPassword: "s3cret"}, nil)
	// redis-cli without a terminal prints each answer on its own line and
	// an error followed by an empty line; it prints nothing for QUIT.
	cliLines(t, proxy, "GET x\nAUTH wrong\nAUTH s3cret\nPING\nECHO hi\nSELECT 0\nSET b:k v\nGET b:k\nCLIENT SETNAME me\nCLIENT GETNAME\nCONFIG GET save\nDEBUG SLEEP 0\nQUIT\n",
		"NOAUTH Authentication required.", "",
		"WRONGPASS invalid username-password pair or user is disabled.", "",
		"OK", "PONG", "hi", "OK", "OK", "v", "OK", "me", "save", "",
		"ERR rosetta: DEBUG is not supported through the proxy", "")
	cliLines(t, proxy, "HELLO 3 AUTH default s3cret\nPING\n",
		"server redis", "version 7.0.0", "proto 3", "id 1", "mode standalone", "role master", "modules ", "PONG")
}

// cliLines runs redis-cli with input piped in and compares its whole output
// with want, one line each.
func cliLines(t *testing.T, addr, input string, want ...string) {
	t.Helper()
	got := cli(t, addr, input)
	if w := strings.Join(want, "\n") + "\n"; got != w {
		t.Fatalf("redis-cli with input %q printed\n%q\nwant\n%q", input, got, w)
	}
}

// TestRedisBenchmark: redis-benchmark (CONFIG GET at start, then pipelined
// GET and SET) through the proxy finishes without errors.
func TestRedisBenchmark(t *testing.T) {
	_, _, proxy := twoServers(t, nil, nil)
	bin := need(t, "redis-benchmark")
	host, port, _ := net.SplitHostPort(proxy)
	for _, p := range []string{"1", "16"} {
		out, err := exec.Command(bin, "-h", host, "-p", port, "-t", "get,set", "-n", "2000", "-c", "10", "-P", p, "-q").CombinedOutput()
		if err != nil || strings.Contains(strings.ToLower(string(out)), "error") || !strings.Contains(string(out), "GET:") {
			t.Fatalf("redis-benchmark -P %s: %v\n%s", p, err, out)
		}
	}
}

// TestTransactionsAndBlockingArePinned: MULTI/EXEC and WATCH run on one
// pinned connection; BLPOP waits on a connection of its own while the same
// client's other commands (on another go-redis connection) go on.
func TestTransactionsAndBlockingArePinned(t *testing.T) {
	_, b, proxy := twoServers(t, nil, nil)
	c, cx := client(t, proxy), ctx(t)
	cmds, err := c.TxPipelined(cx, func(p goredis.Pipeliner) error {
		p.Set(cx, "b:t", "1", 0)
		p.Incr(cx, "b:t")
		return nil
	})
	must(t, err, "MULTI/EXEC")
	if v := cmds[1].(*goredis.IntCmd).Val(); v != 2 {
		t.Fatalf("INCR inside MULTI = %d, want 2", v)
	}
	// WATCH, then a transaction that succeeds.
	err = c.Watch(cx, func(tx *goredis.Tx) error {
		n, err := tx.Get(cx, "b:t").Int()
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(cx, func(p goredis.Pipeliner) error {
			p.Set(cx, "b:t", n*10, 0)
			return nil
		})
		return err
	}, "b:t")
	must(t, err, "WATCH transaction")
	if got, _ := c.Get(cx, "b:t").Result(); got != "20" {
		t.Fatalf("after WATCH/MULTI/EXEC b:t = %q, want 20", got)
	}
	// Keys of two destinations in one transaction are refused.
	_, err = c.TxPipelined(cx, func(p goredis.Pipeliner) error {
		p.Set(cx, "b:t", "1", 0)
		p.Set(cx, "a:t", "1", 0)
		return nil
	})
	if want := "EXECABORT Transaction discarded because of previous errors."; err == nil || err.Error() != want {
		t.Fatalf("a transaction across destinations: %v, want %s", err, want)
	}

	got := make(chan []string, 1)
	go func() {
		v, _ := c.BLPop(cx, 10*time.Second, "b:list").Result()
		got <- v
	}()
	// The blocked BLPOP must not stop other commands through the proxy.
	testutil.Eventually(t, 5*time.Second, "BLPOP to reach server b", func() bool {
		if n, _ := rawCommand(b.Addr, "CLIENT", "LIST"); n == "" {
			return false
		}
		list, _ := exec.Command(need(t, "redis-cli"), "-p", itoa(b.Port), "CLIENT", "LIST").Output()
		return strings.Contains(string(list), "cmd=blpop")
	})
	must(t, c.RPush(cx, "b:list", "x").Err(), "RPUSH while BLPOP waits")
	select {
	case v := <-got:
		if len(v) != 2 || v[1] != "x" {
			t.Fatalf("BLPOP = %v", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("BLPOP did not return")
	}
}

// TestMirrorAndFaults: route policies the proxy applies to Forward work for
// Redis: a mirror gets copies of b: writes, a fault aborts f: commands with
// the FAULT error and delays d: commands.
func TestMirrorAndFaults(t *testing.T) {
	a, b, m := startServer(t), startServer(t), startServer(t)
	proxy := startProxy(t, nil, []obj{
		prefixRoute("b", "b:", "b", obj{"mirror": []obj{{"cluster": "m", "percentage": 100}}}),
		prefixRoute("f", "f:", "a", obj{"fault": obj{"abort": obj{"status": "fault", "percentage": 100}}}),
		prefixRoute("d", "d:", "a", obj{"fault": obj{"delay": obj{"fixed_delay": "0.300s", "percentage": 100}}}),
		prefixRoute("rest", "", "a", nil),
	}, clusterConfig("a", a.Addr), clusterConfig("b", b.Addr), clusterConfig("m", m.Addr))
	c, cx := client(t, proxy), ctx(t)
	must(t, c.Set(cx, "b:m", "v", 0).Err(), "SET b:m")
	testutil.Eventually(t, 5*time.Second, "the mirror to get SET b:m", func() bool {
		got, _ := rawCommand(m.Addr, "EXISTS", "b:m")
		return got == ":1"
	})
	if err := c.Get(cx, "f:x").Err(); err == nil || !strings.HasPrefix(err.Error(), "FAULT") {
		t.Fatalf("GET f:x under an abort fault: %v, want a FAULT error", err)
	}
	start := time.Now()
	must(t, c.Set(cx, "d:x", "1", 0).Err(), "SET d:x")
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("SET d:x took %v under a 300ms delay fault", d)
	}
}

// TestStripPrefix: a route's request mutation redis.strip_prefix removes the
// prefix from every key before the command goes upstream.
func TestStripPrefix(t *testing.T) {
	a, b := startServer(t), startServer(t)
	proxy := startProxy(t, nil, []obj{
		prefixRoute("b", "b:", "b", obj{"request_mutation": []obj{{"key": AttrStripPrefix, "value": "b:"}}}),
		prefixRoute("rest", "", "a", nil),
	}, clusterConfig("a", a.Addr), clusterConfig("b", b.Addr))
	c, cx := client(t, proxy), ctx(t)
	must(t, c.MSet(cx, "b:k1", "1", "b:k2", "2").Err(), "MSET")
	if got, _ := rawCommand(b.Addr, "EXISTS", "k1", "k2"); got != ":2" {
		t.Fatalf("stripped keys on server b: %q", got)
	}
	if v, err := c.Get(cx, "b:k2").Result(); err != nil || v != "2" {
		t.Fatalf("GET b:k2 = %q, %v", v, err)
	}
}

// TestMalformedRequestClosesOnlyThatClient: a bad frame ends its own
// connection; another client carries on.
func TestMalformedRequestClosesOnlyThatClient(t *testing.T) {
	_, _, proxy := twoServers(t, nil, nil)
	good, cx := client(t, proxy), ctx(t)
	must(t, good.Set(cx, "k", "v", 0).Err(), "SET")
	bad, err := net.Dial("tcp", proxy)
	must(t, err, "dial")
	defer bad.Close()
	// A first command makes the connection a client's; the second is bad.
	_, err = bad.Write([]byte("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$x\r\n"))
	must(t, err, "write")
	_ = bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(bad)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the bad client's connection stayed open (read %q)", got)
	}
	if !strings.HasPrefix(string(got), "+PONG\r\n-ERR ") || !strings.Contains(string(got), "Protocol error") {
		t.Fatalf("the bad client read %q, want PONG then a protocol error", got)
	}
	if v, err := good.Get(cx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("the good client after the bad one: %q, %v", v, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestUpstreamAuth: servers that require a password; the proxy AUTHs first
// on its pooled and its pinned connections, and its clients need none.
func TestUpstreamAuth(t *testing.T) {
	a := startServer(t, "--requirepass", "p4ss")
	proxy := startProxy(t, map[string]string{OptUpstreamPassword: "p4ss"},
		[]obj{prefixRoute("all", "", "a", nil)}, clusterConfig("a", a.Addr))
	c, cx := client(t, proxy), ctx(t)
	must(t, c.Set(cx, "k", "v", 0).Err(), "SET through the pool")
	if v, err := c.Get(cx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	_, err := c.TxPipelined(cx, func(p goredis.Pipeliner) error {
		p.Incr(cx, "n")
		return nil
	})
	must(t, err, "MULTI/EXEC on a pinned connection")
	must(t, c.RPush(cx, "q", "x").Err(), "RPUSH")
	if v, err := c.BLPop(cx, time.Second, "q").Result(); err != nil || v[1] != "x" {
		t.Fatalf("BLPOP on a pinned connection = %v, %v", v, err)
	}
	// A subscription's connection opens with AUTH too; the client sees
	// the server's frames, not the answer to AUTH.
	for _, proto := range []int{2, 3} {
		sub := goredis.NewClient(&goredis.Options{Addr: proxy, Protocol: proto})
		ps := sub.Subscribe(cx, "news")
		wantSubscription(t, ps, "subscribe", "news", 1)
		must(t, c.Publish(cx, "news", "hi").Err(), "PUBLISH")
		wantMessage(t, ps, "", "news", "hi")
		must(t, ps.Close(), "close the subscriber")
		must(t, sub.Close(), "close")
	}
	// A wrong upstream password comes back as an error, not a hang.
	bad := startProxy(t, map[string]string{OptUpstreamPassword: "nope"},
		[]obj{prefixRoute("all", "", "a", nil)}, clusterConfig("a", a.Addr))
	refused := "codec/redis: upstream refused the proxy's AUTH: WRONGPASS invalid username-password pair or user is disabled.: unsupported"
	want := "UPSTREAMRESET rosetta: upstream connection reset: " + refused
	if err := client(t, bad).Get(cx, "k").Err(); err == nil || err.Error() != want {
		t.Fatalf("GET through a proxy with the wrong upstream password: %v, want %s", err, want)
	}
	// So does a subscription's (RESP2: the error comes as the stream's end).
	nc, err := net.Dial("tcp", bad)
	must(t, err, "dial the proxy")
	defer nc.Close()
	_, err = nc.Write(appendCommand(nil, strArgs("SUBSCRIBE", "news")...))
	must(t, err, "SUBSCRIBE")
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(nc).ReadString('\n')
	if want := "-UPSTREAMRESET rosetta: the subscription's upstream connection closed: " + refused + "\r\n"; err != nil || line != want {
		t.Fatalf("SUBSCRIBE through a proxy with the wrong upstream password: %q, %v; want %q", line, err, want)
	}
	if err := client(t, bad).Watch(cx, func(*goredis.Tx) error { return nil }, "k"); err == nil || !strings.Contains(err.Error(), refused) {
		t.Fatalf("WATCH (a pinned connection) through a proxy with the wrong upstream password: %v", err)
	}
}

// TestPerCommandMetrics: each command a client sends, answered upstream or by
// the proxy itself, is counted under its name.
func TestPerCommandMetrics(t *testing.T) {
	a := startServer(t)
	p := startProxyWith(t, nil, []obj{prefixRoute("all", "", "a", nil)}, clusterConfig("a", a.Addr))
	c, cx := client(t, p.Addr(t, "redis")), ctx(t)
	must(t, c.Set(cx, "k", "v", 0).Err(), "SET")
	must(t, c.Get(cx, "k").Err(), "GET")
	must(t, c.Get(cx, "k").Err(), "GET")
	must(t, c.Ping(cx).Err(), "PING")
	m := p.Get(t, "/metrics")
	for _, want := range []string{
		`rosetta_operations_total{listener="redis",operation="SET",status="ok"} 1`,
		`rosetta_operations_total{listener="redis",operation="GET",status="ok"} 2`,
		`rosetta_operations_total{listener="redis",operation="PING",status="ok"} 1`,
		`rosetta_operation_duration_seconds_count{listener="redis",operation="GET"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestClientGoneReleasesPinnedConnections: a client that disconnects while
// its BLPOP waits, or inside a WATCH, leaves no connection behind on the
// server: the proxy's Close hook ends them.
func TestClientGoneReleasesPinnedConnections(t *testing.T) {
	a, _, proxy := twoServers(t, nil, nil)
	direct := goredis.NewClient(&goredis.Options{Addr: a.Addr})
	defer direct.Close()
	cx := ctx(t)
	blocked := func() int {
		list, err := direct.ClientList(cx).Result()
		must(t, err, "CLIENT LIST")
		return strings.Count(list, "cmd=blpop") + strings.Count(list, "cmd=watch")
	}
	// A raw connection, so closing it really ends the client (go-redis keeps
	// a connection in use open until its command returns).
	raw, err := net.Dial("tcp", proxy)
	must(t, err, "dial")
	_, err = raw.Write([]byte("*3\r\n$5\r\nBLPOP\r\n$7\r\na:never\r\n$1\r\n0\r\n"))
	must(t, err, "BLPOP")
	c2 := goredis.NewClient(&goredis.Options{Addr: proxy, MaxRetries: -1, PoolSize: 1})
	must(t, c2.Do(cx, "WATCH", "a:w").Err(), "WATCH")
	testutil.Eventually(t, 10*time.Second, "the BLPOP and WATCH to reach the server", func() bool { return blocked() >= 2 })
	raw.Close()
	c2.Close()
	testutil.MustPoll(t, 10*time.Second, "the pinned connections to leave the server with their clients", func() (bool, error) {
		list, err := direct.ClientList(cx).Result()
		return blocked() == 0, fmt.Errorf("CLIENT LIST (%v):\n%s", err, list)
	})
}

// TestPinnedCommandWithoutRouteOrServer: a blocking command whose key no
// route takes, or whose cluster has no server, gets an error that says which,
// and the client's connection goes on working.
func TestPinnedCommandWithoutRouteOrServer(t *testing.T) {
	a := startServer(t)
	proxy := startProxy(t, nil,
		[]obj{prefixRoute("a", "a:", "a", nil), prefixRoute("e", "e:", "empty", nil)},
		clusterConfig("a", a.Addr), clusterConfig("empty"))
	c := client(t, proxy)
	for key, want := range map[string]string{"z": "no route matched", "e:1": `no endpoint in cluster empty`} {
		err := c.BLPop(ctx(t), time.Second, key).Err()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("BLPOP %s: %v, want an error with %q", key, err, want)
		}
	}
	if err := c.BLPop(ctx(t), time.Second, "a:1").Err(); err != goredis.Nil {
		t.Fatalf("BLPOP a:1 timed out with %v, want redis.Nil", err)
	}
}

// TestSplitCommandsPastTheDefaultFrameLimit: a listener may allow frames
// above the default limit (max_frame_bytes); the parts of a split command
// and the keys it is split by are then as large, and must go through. The
// proxy once built the parts under the default limit and crashed on them.
func TestSplitCommandsPastTheDefaultFrameLimit(t *testing.T) {
	_, _, proxy := twoServers(t, map[string]string{OptMaxFrameBytes: strconv.Itoa(4 * codec.DefaultMaxFrame)}, nil)
	c, cx := client(t, proxy), ctx(t)
	big := strings.Repeat("v", codec.DefaultMaxFrame+1)
	bigKey := "b:" + strings.Repeat("k", codec.DefaultMaxFrame+1)
	must(t, c.MSet(cx, "b:big", big, "a:small", "x", bigKey, "y").Err(), "MSET")
	vals, err := c.MGet(cx, "a:small", "b:big", bigKey).Result()
	must(t, err, "MGET")
	if len(vals) != 3 || vals[0] != "x" || vals[1] != big || vals[2] != "y" {
		t.Fatalf("MGET gave %d values, the big one %d bytes", len(vals), len(fmt.Sprint(vals[1])))
	}
}

// A listener whose frames may be larger than the proxy's default buffer
// limit (16 MiB) takes them both ways: the command in, the server's answer
// back, which comes on an upstream connection of the same options.
func TestValuesPastTheDefaultBufferLimit(t *testing.T) {
	// 20 MiB each way took 4 s under the race detector at a load of 20 on
	// two cores, and more than the default frame timeout (30 s) at 30: the
	// frames both ways, the route and the client wait for the answers (the
	// proof), bounded only to end a proxy that never answers. go-redis does
	// not retry, so a failure shows its first cause.
	s := startServer(t)
	lim := proxy.DefaultLimits()
	lim.FrameTimeout = 2 * time.Minute
	addr := proxytest.StartWithLimits(t, listenerConfig(t, map[string]string{OptMaxFrameBytes: strconv.Itoa(32 << 20)},
		[]obj{prefixRoute("all", "", "s", obj{"timeout": "120s"})}, clusterConfig("s", s.Addr)), lim).Addr(t, "redis")
	c := goredis.NewClient(&goredis.Options{Addr: addr, ReadTimeout: -1, WriteTimeout: -1, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	cx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	huge := strings.Repeat("h", 20<<20)
	must(t, c.Set(cx, "a:huge", huge, 0).Err(), "SET of 20 MiB")
	got, err := c.Get(cx, "a:huge").Result()
	must(t, err, "GET of 20 MiB")
	if got != huge {
		t.Fatalf("GET gave %d bytes, want %d", len(got), len(huge))
	}
}
