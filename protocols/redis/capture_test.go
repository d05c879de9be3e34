package redis

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

var update = flag.Bool("update", false, "record testdata/*.resp from go-redis and a real redis-server")

// recorder is a net.Conn that keeps what goes each way.
type recorder struct {
	net.Conn
	mu      sync.Mutex
	out, in *bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.in.Write(b[:n])
	r.mu.Unlock()
	return n, err
}

// TestCaptures records, with -update, what go-redis v9 (RESP3, its
// defaults; and RESP2, as the proxy speaks to servers) sends to a real
// redis-server and what the server answers, in testdata/<name>requests.resp
// and testdata/<name>answers.resp; without -update it checks that the
// captures split into whole frames.
func TestCaptures(t *testing.T) {
	if *update {
		record(t)
	}
	reqs, answers := captures(t)
	if len(reqs) < 10 || len(answers) < 10 {
		t.Fatalf("captures hold %d requests and %d answers", len(reqs), len(answers))
	}
}

func record(t *testing.T) {
	s := startServer(t)
	out, in := recordSession(t, s.Addr, 3, basicSession)
	must(t, os.WriteFile("testdata/requests.resp", out, 0o644), "write")
	must(t, os.WriteFile("testdata/answers.resp", in, 0o644), "write")
	out, in = recordSession(t, s.Addr, 3, statefulSession)
	must(t, os.WriteFile("testdata/stateful-requests.resp", out, 0o644), "write")
	must(t, os.WriteFile("testdata/stateful-answers.resp", in, 0o644), "write")
	nodes := startCluster(t)
	out, in = recordSession(t, nodes[0].Addr, 3, clusterSession)
	must(t, os.WriteFile("testdata/cluster-requests.resp", out, 0o644), "write")
	must(t, os.WriteFile("testdata/cluster-answers.resp", in, 0o644), "write")
	out, in = recordSession(t, s.Addr, 2, resp2Session)
	must(t, os.WriteFile("testdata/resp2-requests.resp", out, 0o644), "write")
	must(t, os.WriteFile("testdata/resp2-answers.resp", in, 0o644), "write")
}

// recordSession runs session with a go-redis client of one connection to
// addr, speaking RESP proto, and returns what went each way.
func recordSession(t *testing.T, addr string, proto int, session func(context.Context, *goredis.Client)) (out, in []byte) {
	var o, i bytes.Buffer
	c := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: proto, PoolSize: 1, Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &recorder{Conn: nc, out: &o, in: &i}, nil
	}})
	session(context.Background(), c)
	must(t, c.Close(), "close")
	return o.Bytes(), i.Bytes()
}

func basicSession(cx context.Context, c *goredis.Client) {
	c.Set(cx, "foo", "bar", 0)
	c.Get(cx, "foo")
	c.Get(cx, "missing")
	c.MSet(cx, "a", "1", "b", "2")
	c.MGet(cx, "a", "b", "missing")
	c.Del(cx, "a", "b")
	c.HSet(cx, "h", "f1", "v1", "f2", "v2")
	c.HGetAll(cx, "h")
	c.SAdd(cx, "s", "x", "y")
	c.SMembers(cx, "s")
	c.ZAdd(cx, "z", goredis.Z{Score: 1.5, Member: "m"})
	c.ZScore(cx, "z", "m")
	c.Incr(cx, "n")
	c.Do(cx, "EVAL", "return true", "0")
	c.Do(cx, "EVAL", "return {big_number='1234567890123456789012345678901234567890'}", "0")
	c.Info(cx, "server")
	c.Do(cx, "NOSUCHCOMMAND")
	c.LPush(cx, "foo", "x") // WRONGTYPE
	c.Ping(cx)
}

// statefulSession is what the proxy pins connections for: transactions,
// blocking commands and a subscription (RESP3, so pushes share the
// connection with answers).
func statefulSession(cx context.Context, c *goredis.Client) {
	c.Watch(cx, func(tx *goredis.Tx) error {
		_, err := tx.TxPipelined(cx, func(p goredis.Pipeliner) error {
			p.Set(cx, "t", "1", 0)
			p.Incr(cx, "t")
			return nil
		})
		return err
	}, "t")
	c.Do(cx, "MULTI")
	c.Do(cx, "SET", "u", "1")
	c.Do(cx, "DISCARD")
	c.RPush(cx, "q", "job")
	c.BLPop(cx, time.Second, "q")
	c.BLPop(cx, 10*time.Millisecond, "empty")
	c.Do(cx, "XADD", "st", "*", "f", "v")
	c.Do(cx, "XREAD", "BLOCK", "10", "STREAMS", "st", "0")
	c.Do(cx, "SUBSCRIBE", "news")
	c.Do(cx, "PUBLISH", "news", "hello")
	c.Do(cx, "PSUBSCRIBE", "n*")
	c.Do(cx, "PUBLISH", "news", "again")
	c.Do(cx, "UNSUBSCRIBE")
	c.Do(cx, "PUNSUBSCRIBE")
	c.Do(cx, "RESET")
}

// clusterSession asks one node of a Redis Cluster for its slot map and
// for keys of every node, so that the answers hold MOVED redirections.
func clusterSession(cx context.Context, c *goredis.Client) {
	c.Do(cx, "CLUSTER", "SHARDS")
	c.Do(cx, "CLUSTER", "SLOTS")
	for _, k := range []string{"a", "b", "c", "{a}x", "foo"} {
		c.Set(cx, k, "1", 0)
		c.Get(cx, k)
	}
	c.MGet(cx, "a", "{a}x")
	c.Do(cx, "EVAL", "return redis.call('GET', KEYS[1])", "1", "c")
}

// resp2Session is the answers the proxy's own connections to servers carry:
// RESP2, where MGET, KEYS, SMEMBERS, HGETALL and LRANGE answer arrays of
// bulk strings, the shape of a command (and here with members that name
// commands).
func resp2Session(cx context.Context, c *goredis.Client) {
	c.FlushAll(cx)
	c.MSet(cx, "a", "1", "b", "2")
	c.MGet(cx, "a", "b")
	c.MGet(cx, "a", "missing")
	c.Keys(cx, "a*")
	c.SAdd(cx, "s", "GET")
	c.SMembers(cx, "s")
	c.HSet(cx, "h", "SET", "k")
	c.HGetAll(cx, "h")
	c.RPush(cx, "l", "PING", "x")
	c.LRange(cx, "l", 0, -1)
	c.Do(cx, "CLIENT", "NOSUCH")
}

// frames splits a capture stream with a codec facing peer: a client's
// requests with codec.PeerClient, a server's answers with codec.PeerServer.
func frames(t testing.TB, stream []byte, peer codec.Peer) [][]byte {
	t.Helper()
	rc := newCodec(t, nil, peer)
	var out [][]byte
	for len(stream) > 0 {
		sp, err := rc.Split(stream)
		if err != nil || sp.Len == 0 {
			t.Fatalf("capture does not split: %+v, %v", sp, err)
		}
		out = append(out, stream[:sp.Len])
		stream = stream[sp.Len:]
	}
	return out
}

// sessions names the recorded sessions: testdata/<name>requests.resp and
// testdata/<name>answers.resp.
var sessions = []string{"", "stateful-", "cluster-", "resp2-"}

// captures returns the recorded requests and answers of every session,
// frame by frame.
func captures(t testing.TB) (reqs, answers [][]byte) {
	t.Helper()
	for _, name := range sessions {
		r, a := capture(t, name)
		reqs = append(reqs, frames(t, r, codec.PeerClient)...)
		answers = append(answers, frames(t, a, codec.PeerServer)...)
	}
	return reqs, answers
}

// capture returns one session's streams.
func capture(t testing.TB, name string) (reqs, answers []byte) {
	t.Helper()
	reqs, err := os.ReadFile("testdata/" + name + "requests.resp")
	must(t, err, "read")
	answers, err = os.ReadFile("testdata/" + name + "answers.resp")
	must(t, err, "read")
	return reqs, answers
}
