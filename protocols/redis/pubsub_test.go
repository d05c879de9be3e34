package redis

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Subscriptions of clients that went away close within a few probes.
func init() { probeInterval = 50 * time.Millisecond }

// subscriberConns counts the connections of the server at addr whose last
// command was a pub/sub one: the proxy's subscription connections (its
// pooled connections never send one).
func subscriberConns(t *testing.T, addr string) int {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2})
	defer c.Close()
	list, err := c.ClientList(ctx(t)).Result()
	must(t, err, "CLIENT LIST on %s", addr)
	return len(regexp.MustCompile(`cmd=(p|s)?(un)?subscribe\b`).FindAllString(list, -1))
}

func wantSubscription(t *testing.T, ps *goredis.PubSub, kind, channel string, count int) {
	t.Helper()
	m, err := ps.Receive(ctx(t))
	must(t, err, "receive %s %s", kind, channel)
	s, ok := m.(*goredis.Subscription)
	if !ok || s.Kind != kind || s.Channel != channel || s.Count != count {
		t.Fatalf("got %#v, want %s %s %d", m, kind, channel, count)
	}
}

func wantMessage(t *testing.T, ps *goredis.PubSub, pattern, channel, payload string) {
	t.Helper()
	m, err := ps.ReceiveMessage(ctx(t))
	must(t, err, "receive a message on %s", channel)
	if m.Pattern != pattern || m.Channel != channel || m.Payload != payload {
		t.Fatalf("got %#v, want pattern %q channel %q payload %q", m, pattern, channel, payload)
	}
}

// TestPubSubGoRedis: go-redis subscribers through the proxy, in RESP3 (its
// default) and RESP2. Subscriptions go to the server the first channel's
// route picks; messages published directly on that server and through the
// proxy (PUBLISH routes by channel) arrive; PSUBSCRIBE, PING and UNSUBSCRIBE
// work while subscribed; closing the subscriber closes the proxy's
// connection to the server.
func TestPubSubGoRedis(t *testing.T) {
	a, b, proxy := twoServers(t, nil, nil)
	for _, proto := range []int{3, 2} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			cx := ctx(t)
			onB, onA, viaProxy := client(t, b.Addr), client(t, a.Addr), client(t, proxy)
			sub := goredis.NewClient(&goredis.Options{Addr: proxy, Protocol: proto})
			t.Cleanup(func() { sub.Close() })

			ps := sub.Subscribe(cx, "b:news", "b:sport")
			wantSubscription(t, ps, "subscribe", "b:news", 1)
			wantSubscription(t, ps, "subscribe", "b:sport", 2)
			if n := onB.PubSubNumSub(cx, "b:news").Val()["b:news"]; n != 1 {
				t.Fatalf("subscribers of b:news on server b: %d", n)
			}
			if n := onA.PubSubNumSub(cx, "b:news").Val()["b:news"]; n != 0 {
				t.Fatalf("subscribers of b:news on server a: %d", n)
			}
			if n, err := onB.Publish(cx, "b:news", "hello").Result(); err != nil || n != 1 {
				t.Fatalf("PUBLISH on server b = %d, %v", n, err)
			}
			wantMessage(t, ps, "", "b:news", "hello")
			if n, err := viaProxy.Publish(cx, "b:sport", "goal").Result(); err != nil || n != 1 {
				t.Fatalf("PUBLISH through the proxy = %d, %v", n, err)
			}
			wantMessage(t, ps, "", "b:sport", "goal")

			must(t, ps.PSubscribe(cx, "b:p.*"), "PSUBSCRIBE")
			wantSubscription(t, ps, "psubscribe", "b:p.*", 3)
			must(t, onB.Publish(cx, "b:p.one", "x").Err(), "PUBLISH b:p.one")
			wantMessage(t, ps, "b:p.*", "b:p.one", "x")

			must(t, ps.Ping(cx, "hi"), "PING while subscribed")
			m, err := ps.Receive(cx)
			if p, ok := m.(*goredis.Pong); err != nil || !ok || p.Payload != "hi" {
				t.Fatalf("PING while subscribed: %#v, %v", m, err)
			}

			must(t, ps.Unsubscribe(cx, "b:news"), "UNSUBSCRIBE b:news")
			wantSubscription(t, ps, "unsubscribe", "b:news", 2)
			if n := onB.Publish(cx, "b:news", "lost").Val(); n != 0 {
				t.Fatalf("b:news still has %d subscribers after UNSUBSCRIBE", n)
			}
			// Ordinary commands keep working on the client's other
			// connections while it is subscribed.
			must(t, sub.Set(cx, "b:k", "v", 0).Err(), "SET while a subscription is open")

			must(t, ps.Close(), "close the subscriber")
			testutil.Eventually(t, 10*time.Second, "the proxy to close its subscription connection", func() bool {
				return subscriberConns(t, b.Addr) == 0
			})
		})
	}
}

// pipeline writes the commands at once and reads the answers until the
// answer to a final ECHO END.
func pipeline(t *testing.T, addr string, cmds [][]string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	must(t, err, "dial %s", addr)
	defer c.Close()
	var out []byte
	for _, cmd := range append(cmds, []string{"ECHO", "END"}) {
		out = appendCommand(out, strArgs(cmd...)...)
	}
	_, err = c.Write(out)
	must(t, err, "write the pipeline")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(got, []byte("$3\r\nEND\r\n")) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("reading the pipeline's answers: %v; so far %q", err, got)
		}
	}
	return got
}

// respFrames cuts a stream of RESP values into frames.
func respFrames(t *testing.T, b []byte) []string {
	t.Helper()
	c := newCodec(t, nil, codec.PeerServer)
	var out []string
	for len(b) > 0 {
		s, err := c.Split(b)
		if err != nil || s.Len == 0 {
			t.Fatalf("not RESP: %q: %v", b, err)
		}
		out = append(out, string(b[:s.Len]))
		b = b[s.Len:]
	}
	return out
}

// TestPubSubPipelineRESP2 sends one pipeline to the server directly and
// through the proxy, and wants the same bytes back: answers to commands
// before SUBSCRIBE first (even a BLPOP the server answers 200 ms later),
// commands subscribe mode refuses refused by the server's own error, PING's
// pong array, UNSUBSCRIBE confirmations, and once the last subscription is
// gone, ordinary commands again, routed as usual.
func TestPubSubPipelineRESP2(t *testing.T) {
	_, b, proxy := twoServers(t, nil, nil)
	cmds := [][]string{
		{"SET", "b:k", "v"},
		{"BLPOP", "b:empty", "0.2"},
		{"GET", "b:k"},
		{"SUBSCRIBE", "b:c1", "b:c2"},
		{"GET", "b:k"},
		{"PING"},
		{"PING", "hi"},
		{"PSUBSCRIBE", "b:p*"},
		{"UNSUBSCRIBE"},
		{"SET", "b:k", "w"},
		{"HELLO", "3"},
		{"PUNSUBSCRIBE", "b:p*"},
		{"GET", "b:k"},
		{"UNSUBSCRIBE", "b:zz"},
		{"PUNSUBSCRIBE"},
		{"SUBSCRIBE", "b:c3"},
		{"SSUBSCRIBE", "b:s"},
		{"UNSUBSCRIBE", "b:c3"},
		{"SUNSUBSCRIBE"},
		{"SUBSCRIBE", "b:c4"},
		{"RESET"},
		{"GET", "b:k"},
	}
	want := pipeline(t, b.Addr, cmds)
	got := pipeline(t, proxy, cmds)
	if !bytes.Equal(got, want) {
		t.Fatalf("through the proxy:\n%q\ndirectly:\n%q", got, want)
	}
	if !strings.HasPrefix(string(want), "+OK\r\n*-1\r\n$1\r\nv\r\n*3\r\n$9\r\nsubscribe\r\n") {
		t.Fatalf("unexpected server answers: %q", want)
	}
	testutil.Eventually(t, 10*time.Second, "the subscription connections to close", func() bool { return subscriberConns(t, b.Addr) == 0 })
}

// TestPubSubPipelineRESP3: the same with HELLO 3 first. In RESP3 pushes are
// out of band, so the answers must come in order among themselves and the
// pushes in order among themselves; every command is allowed while
// subscribed.
func TestPubSubPipelineRESP3(t *testing.T) {
	_, b, proxy := twoServers(t, nil, nil)
	cmds := [][]string{
		{"HELLO", "3"},
		{"SET", "b:k", "v"},
		{"BLPOP", "b:empty", "0.2"},
		{"UNSUBSCRIBE"},
		{"SUBSCRIBE", "b:c1", "b:c2"},
		{"GET", "b:k"},
		{"PSUBSCRIBE", "b:p*"},
		{"UNSUBSCRIBE", "b:c1"},
		{"PING"},
		{"UNSUBSCRIBE"},
		{"PUNSUBSCRIBE"},
		{"GET", "b:k"},
	}
	split := func(b []byte) (answers, pushes []string) {
		fs := respFrames(t, b)
		for _, f := range fs[1:] { // HELLO's answer names the server
			if f[0] == typePush {
				pushes = append(pushes, f)
			} else {
				answers = append(answers, f)
			}
		}
		return answers, pushes
	}
	wantA, wantP := split(pipeline(t, b.Addr, cmds))
	gotA, gotP := split(pipeline(t, proxy, cmds))
	// Server data comes back RESP2-shaped through the proxy (see the
	// README): BLPOP's timeout is *-1, not RESP3's null.
	for i, a := range gotA {
		if a == "*-1\r\n" {
			gotA[i] = "_\r\n"
		}
	}
	if strings.Join(gotA, "") != strings.Join(wantA, "") || strings.Join(gotP, "") != strings.Join(wantP, "") {
		t.Fatalf("through the proxy: answers %q pushes %q\ndirectly: answers %q pushes %q", gotA, gotP, wantA, wantP)
	}
	if len(wantP) != 7 {
		t.Fatalf("the server sent %d pushes: %q", len(wantP), wantP)
	}
	testutil.Eventually(t, 10*time.Second, "the subscription connection to close", func() bool { return subscriberConns(t, b.Addr) == 0 })
}

// TestPubSubRedisCLI: redis-cli SUBSCRIBE through the proxy, in RESP2 and
// RESP3 (-3), prints a message published on the server; killing redis-cli
// closes the proxy's subscription connection.
func TestPubSubRedisCLI(t *testing.T) {
	_, b, proxy := twoServers(t, nil, nil)
	bin := need(t, "redis-cli")
	onB := client(t, b.Addr)
	host, port, _ := net.SplitHostPort(proxy)
	for _, extra := range [][]string{nil, {"-3"}} {
		cmd := exec.Command(bin, append(append([]string{"-h", host, "-p", port}, extra...), "SUBSCRIBE", "b:cli")...)
		stdout, err := cmd.StdoutPipe()
		must(t, err, "redis-cli stdout")
		must(t, cmd.Start(), "redis-cli SUBSCRIBE")
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		waitLine := func(want string) {
			t.Helper()
			timeout := time.After(10 * time.Second)
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("redis-cli %v ended before printing %q", extra, want)
					}
					if strings.Contains(l, want) {
						return
					}
				case <-timeout:
					t.Fatalf("redis-cli %v did not print %q", extra, want)
				}
			}
		}
		waitLine("b:cli")
		testutil.Eventually(t, 10*time.Second, "the subscription on server b", func() bool {
			return onB.PubSubNumSub(ctx(t), "b:cli").Val()["b:cli"] == 1
		})
		must(t, onB.Publish(ctx(t), "b:cli", "hello-cli").Err(), "PUBLISH")
		waitLine("hello-cli")
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for range lines { // drain the reader
		}
		testutil.Eventually(t, 10*time.Second, "the proxy to close its subscription connection", func() bool {
			return subscriberConns(t, b.Addr) == 0
		})
	}
}

// TestPubSubUpstreamGone: a RESP2 subscriber whose server goes away gets an
// error push, and its next commands are served as outside subscribe mode.
func TestPubSubUpstreamGone(t *testing.T) {
	_, b, proxy := twoServers(t, nil, nil)
	c, err := net.Dial("tcp", proxy)
	must(t, err, "dial the proxy")
	defer c.Close()
	_, err = c.Write(appendCommand(nil, strArgs("SUBSCRIBE", "b:x")...))
	must(t, err, "SUBSCRIBE")
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	want := "*3\r\n$9\r\nsubscribe\r\n$3\r\nb:x\r\n:1\r\n"
	got := make([]byte, len(want))
	_, err = io.ReadFull(r, got)
	if err != nil || string(got) != want {
		t.Fatalf("SUBSCRIBE answered %q, %v", got, err)
	}
	b.Stop()
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "-UPSTREAMRESET rosetta: the subscription's upstream connection closed") {
		t.Fatalf("after the server died: %q, %v", line, err)
	}
	_, err = c.Write(appendCommand(nil, strArgs("PING")...))
	must(t, err, "PING")
	if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING after the subscription ended: %q, %v", line, err)
	}
}

// clusterPubSub: through a proxy in cluster mode, SSUBSCRIBE goes to the
// node owning the channel's slot and gets SPUBLISH'd messages, and
// SUBSCRIBE gets messages PUBLISHed on any node.
func clusterPubSub(t *testing.T, nodes []*server, proxy string) {
	cx := ctx(t)
	sub := goredis.NewClient(&goredis.Options{Addr: proxy})
	t.Cleanup(func() { sub.Close() })
	viaProxy := client(t, proxy)
	ps := sub.SSubscribe(cx, "{s}news")
	wantSubscription(t, ps, "ssubscribe", "{s}news", 1)
	owner, others := nodeFor(t, nodes, "{s}news")
	onOwner := client(t, owner.Addr)
	if n := onOwner.PubSubShardNumSub(cx, "{s}news").Val()["{s}news"]; n != 1 {
		t.Fatalf("shard subscribers of {s}news on its slot's owner: %d", n)
	}
	must(t, viaProxy.SPublish(cx, "{s}news", "m1").Err(), "SPUBLISH through the proxy")
	wantMessage(t, ps, "", "{s}news", "m1")
	must(t, onOwner.SPublish(cx, "{s}news", "m2").Err(), "SPUBLISH on the owner")
	wantMessage(t, ps, "", "{s}news", "m2")
	must(t, ps.Close(), "close the shard subscriber")

	ps = sub.Subscribe(cx, "plain")
	wantSubscription(t, ps, "subscribe", "plain", 1)
	// The cluster bus carries PUBLISH to every node; publish on a node
	// the subscription is not on.
	must(t, client(t, others[0].Addr).Publish(cx, "plain", "m3").Err(), "PUBLISH on another node")
	wantMessage(t, ps, "", "plain", "m3")
	must(t, ps.Close(), "close the subscriber")
}

// writtenUpstream is a codec.Upstream whose Push writes to a client that
// is connected or gone, calling Written only when it writes, as the proxy
// does; Dedicated hands out connections that record what is sent.
type writtenUpstream struct {
	*fuzzUpstream
	mu     sync.Mutex
	gone   bool
	pushed []string
	conns  chan *recordedConn
}

func (u *writtenUpstream) Push(m *codec.Message) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.gone {
		return
	}
	if len(m.Raw) > 0 { // not a probe
		u.pushed = append(u.pushed, string(m.Raw))
	}
	if m.Written != nil {
		m.Written()
	}
}

func (u *writtenUpstream) pushes() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.pushed...)
}

func (u *writtenUpstream) Dedicated(_, _ string, recv func(*codec.Message, error)) (codec.DedicatedConn, error) {
	c := &recordedConn{recv: recv}
	u.conns <- c
	return c, nil
}

type recordedConn struct {
	recv   func(*codec.Message, error)
	mu     sync.Mutex
	sent   []string
	closed bool
}

func (c *recordedConn) Send(m *codec.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, string(m.Raw))
	return nil
}

func (c *recordedConn) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

func (c *recordedConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// serverSays decodes frame as the codec of a connection to a server does:
// after Handshake when it opened with AUTH.
func serverSays(t *testing.T, up *redisCodec, frame string) *codec.Message {
	t.Helper()
	m, err := up.Decode([]byte(frame))
	must(t, err, "decode %q", frame)
	return m
}

// TestSubscriptionStartsWhenItsAnswerIsWritten: the subscribing command's
// answer carries a Written hook (and nothing Encode would look at); the
// server's frames are pushed only once the proxy has called it, so no
// push overtakes an earlier answer. The answer to the connection's own
// AUTH is not pushed. When a push is not written (the client went away),
// the subscription closes its connection.
func TestSubscriptionStartsWhenItsAnswerIsWritten(t *testing.T) {
	up := &writtenUpstream{fuzzUpstream: newFuzzUpstream(nil), conns: make(chan *recordedConn, 1)}
	c := newCodec(t, nil, codec.PeerClient)
	sub, err := c.Decode(appendCommand(nil, strArgs("SUBSCRIBE", "ch")...))
	must(t, err, "decode SUBSCRIBE")
	answers := make(chan *codec.Message, 1)
	c.Handle(sub, up, codec.ReplyFunc(func(m *codec.Message) { answers <- m }))
	conn := <-up.conns
	var ans *codec.Message
	select {
	case ans = <-answers:
	case <-time.After(10 * time.Second):
		t.Fatal("SUBSCRIBE's answer slot was never filled")
	}
	if ans.Written == nil || ans.Private != nil {
		t.Fatalf("SUBSCRIBE's answer: Written %v, Private %v; want a Written hook alone", ans.Written != nil, ans.Private)
	}
	if out, err := c.Encode(nil, ans); err != nil || len(out) != 0 {
		t.Fatalf("Encode of SUBSCRIBE's answer = %q, %v; want nothing", out, err)
	}

	// The connection to the server opened with AUTH: its answer comes
	// first, marked as the handshake's, and is not the client's.
	server := newCodec(t, codec.Options{OptUpstreamPassword: "pw"}, codec.PeerServer)
	server.Handshake(nil)
	conn.recv(serverSays(t, server, "+OK\r\n"), nil)
	confirm := "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
	conn.recv(serverSays(t, server, confirm), nil)
	time.Sleep(50 * time.Millisecond) // time for a wrong push
	if p := up.pushes(); len(p) != 0 {
		t.Fatalf("pushed %q before SUBSCRIBE's answer was written", p)
	}
	ans.Written()
	testutil.Eventually(t, 10*time.Second, "the confirmation pushed", func() bool { return len(up.pushes()) > 0 })
	if p := up.pushes(); len(p) != 1 || p[0] != confirm {
		t.Fatalf("pushed %q, want the confirmation alone", p)
	}

	up.mu.Lock()
	up.gone = true
	up.mu.Unlock()
	conn.recv(serverSays(t, server, "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"), nil)
	testutil.Eventually(t, 10*time.Second, "the subscription's connection closed", conn.isClosed)
}

// TestPinnedIgnoresHandshakeAnswers: a pinned connection pairs the server's
// answers with its commands, past the answers to the connection's own
// AUTH and READONLY.
func TestPinnedIgnoresHandshakeAnswers(t *testing.T) {
	server := newCodec(t, codec.Options{OptUpstreamPassword: "pw", OptMode: ModeCluster, OptReadPolicy: ReadPolicyPreferReplica}, codec.PeerServer)
	server.Handshake(nil)
	p := &pinned{}
	got := make(chan string, 2)
	p.waiting = []func(*codec.Message){func(m *codec.Message) { got <- string(m.Raw) }}
	p.recv(serverSays(t, server, "+OK\r\n"), nil)
	p.recv(serverSays(t, server, "+OK\r\n"), nil)
	p.recv(serverSays(t, server, "$1\r\nv\r\n"), nil)
	select {
	case a := <-got:
		if a != "$1\r\nv\r\n" {
			t.Fatalf("the command got %q, want the server's answer to it", a)
		}
	default:
		t.Fatal("the command got no answer")
	}
}
