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
// defaults) sends to a real redis-server and what the server answers, in
// testdata/requests.resp and testdata/answers.resp; without -update it checks
// that the captures split into whole frames.
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
	var out, in bytes.Buffer
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, PoolSize: 1, Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &recorder{Conn: nc, out: &out, in: &in}, nil
	}})
	cx := context.Background()
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
	c.Close()
	must(t, os.WriteFile("testdata/requests.resp", out.Bytes(), 0o644), "write")
	must(t, os.WriteFile("testdata/answers.resp", in.Bytes(), 0o644), "write")
}

// frames splits a capture stream with a codec on the given side.
func frames(t testing.TB, stream []byte, side int32) [][]byte {
	t.Helper()
	c, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := c.(*redisCodec)
	rc.side.Store(side)
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

// captures returns the recorded requests and answers, frame by frame.
func captures(t testing.TB) (reqs, answers [][]byte) {
	t.Helper()
	r, err := os.ReadFile("testdata/requests.resp")
	must(t, err, "read")
	a, err := os.ReadFile("testdata/answers.resp")
	must(t, err, "read")
	return frames(t, r, sideServer), frames(t, a, sideClient)
}
