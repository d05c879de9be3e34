package trpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	"github.com/rosetta-mesh/rosetta/protocols/dubbo/dubbopeer"
	"github.com/rosetta-mesh/rosetta/protocols/thrift/thriftpeer"

	// The auto listener picks among the codecs of the standard build that
	// sniff: Dubbo, Thrift, tRPC and Redis.
	_ "github.com/rosetta-mesh/rosetta/protocols/standard"
)

// autoProxy runs a proxy with one listener whose codec is "auto", with
// the clusters (name to address) and inline routes.
func autoProxy(t *testing.T, clusters map[string]string, routes []obj) *proxytest.Proxy {
	t.Helper()
	var cs []obj
	for name, addr := range clusters {
		cs = append(cs, clusterFor(name, addr))
	}
	cfg := obj{
		"listeners": []obj{{
			"name":    "mixed",
			"address": obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}},
			"filter_chains": []obj{{"filters": []obj{{
				"name": "rosetta.metaprotocol",
				"typed_config": obj{
					"@type":        "type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy",
					"codec":        "auto",
					"route_config": obj{"name": "mixed", "routes": routes},
					// Idle callers are closed soon, and counted, for the
					// silent caller below.
					"idle_timeout": "0.3s",
				},
			}}}},
		}},
		"clusters": cs,
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return proxytest.Start(t, string(js))
}

func present(name string) obj {
	return obj{"attributes": []obj{{"name": name, "present": true}}}
}

// TestAutoListenerServesEveryProtocolOnOnePort: one listener with codec
// "auto" serves real clients of four protocols on one port, each routed to
// its own upstream by an attribute only its codec gives (Dubbo's
// interface, tRPC's callee, Redis's command, then Thrift's method):
// trpc-go's client and server; a Dubbo consumer and provider written with
// dubbo-go-hessian2's packet codec (dubbopeer); Apache Thrift's generated
// client, in three of its formats, and server (thriftpeer); go-redis and
// Debian's redis-server. A caller that sends what no protocol opens with, or nothing, is
// closed with the reason counted.
func TestAutoListenerServesEveryProtocolOnOnePort(t *testing.T) {
	trpcAddr := startServer(t, "trpc-server")
	dub, err := dubbopeer.Serve("127.0.0.1:0", "dubbo-provider", func(_ context.Context, r *dubbopeer.Request) (any, error) {
		return fmt.Sprintf("dubbo-provider: %s %v", r.Method, r.Args), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dub.Close() })
	// A THeader server reads every format (framed or not, binary or
	// compact, THeader), as Apache Thrift's THeaderTransport detects them.
	thr, err := thriftpeer.Serve("127.0.0.1:0", "thrift-server", thriftpeer.Format{Transport: "header"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { thr.Close() })
	redisAddr := testutil.RedisServer(t)
	p := autoProxy(t, map[string]string{"trpc": trpcAddr, "dubbo": dub.Addr(), "thrift": thr.Addr(), "redis": redisAddr}, []obj{
		{"name": "dubbo", "match": present("interface"), "route": obj{"cluster": "dubbo", "timeout": "3s"}},
		{"name": "trpc", "match": present("callee"), "route": obj{"cluster": "trpc", "timeout": "3s"}},
		{"name": "redis", "match": present("command"), "route": obj{"cluster": "redis", "timeout": "3s"}},
		{"name": "thrift", "match": present("method"), "route": obj{"cluster": "thrift", "timeout": "3s"}},
	})
	addr := p.Addr(t, "mixed")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// tRPC.
	for i := range 3 {
		got, err := callHello(ctx, sayHello, fmt.Sprint("t", i), clientOpts(addr)...)
		if want := fmt.Sprintf("trpc-server: hello t%d", i); err != nil || got != want {
			t.Fatalf("tRPC call %d = %q, %v; want %q", i, got, err, want)
		}
	}

	// Dubbo.
	dc, err := dubbopeer.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	for i := range 3 {
		v, atts, err := dc.Call(ctx, dubbopeer.Service{Interface: "org.rosetta.Greeter"}, "sayHello", []any{fmt.Sprint("d", i)}, nil)
		if want := fmt.Sprintf("dubbo-provider: sayHello [d%d]", i); err != nil || v != want {
			t.Fatalf("Dubbo call %d = %v, %v; want %q", i, v, err, want)
		}
		if dubbopeer.ProviderName(atts) != "dubbo-provider" {
			t.Fatalf("Dubbo call %d answered by %q", i, dubbopeer.ProviderName(atts))
		}
	}

	// Thrift, in three formats.
	formats := []thriftpeer.Format{{}, {Transport: "buffered", Protocol: "compact"}, {Transport: "header"}}
	for i, f := range formats {
		tc, err := thriftpeer.Dial(addr, f)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			got, err := tc.Ping(ctx, fmt.Sprint(i))
			if err != nil || thriftpeer.Answerer(got) != "thrift-server" {
				t.Fatalf("Thrift %s ping = %q, %v; want an answer from thrift-server", f, got, err)
			}
		}
		tc.Close()
	}

	// Redis: go-redis opens with HELLO 3, which the codec answers itself;
	// the SET reaches redis-server, whose own connection reads it back.
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rc.Close()
	if err := rc.Set(ctx, "auto:k", "v", 0).Err(); err != nil {
		t.Fatalf("Redis SET through the proxy: %v", err)
	}
	direct := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer direct.Close()
	if got, err := direct.Get(ctx, "auto:k").Result(); err != nil || got != "v" {
		t.Fatalf("redis-server has auto:k = %q, %v; want v", got, err)
	}
	if got, err := rc.Get(ctx, "auto:k").Result(); err != nil || got != "v" {
		t.Fatalf("Redis GET through the proxy = %q, %v; want v", got, err)
	}

	// trpc-go's client and go-redis may open more than one connection.
	for proto, least := range map[string]int{"trpc": 1, "dubbo": 1, "thrift": len(formats), "redis": 1} {
		series := fmt.Sprintf(`rosetta_downstream_sniffed_total{listener="mixed",protocol=%q}`, proto)
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(metricLine(t, p, series), series), " %d", &n); err != nil || n < least {
			t.Errorf("%s: %d connections (%v), want at least %d", series, n, err, least)
		}
	}

	// Garbage, and a caller that says nothing.
	for reason, send := range map[string]string{"no_match": "GET / HTTP/1.1\r\n\r\n", "silent": ""} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write([]byte(send)); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := nc.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
			t.Errorf("%s: read %d bytes, %v; want the proxy's close", reason, n, err)
		}
		nc.Close()
		want := fmt.Sprintf(`rosetta_downstream_sniff_failures_total{listener="mixed",reason=%q} 1`, reason)
		testutil.MustPoll(t, 5*time.Second, reason+" counted", func() (bool, error) {
			got := metricLine(t, p, want[:strings.Index(want, "}")+1])
			return got == want, fmt.Errorf("metrics: %q, want %q", got, want)
		})
	}
}

// metricLine is the line of the proxy's metrics that starts with prefix,
// "" when there is none.
func metricLine(t *testing.T, p *proxytest.Proxy, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(p.Get(t, "/metrics"), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
