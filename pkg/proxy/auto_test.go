package proxy_test

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

// toyAuto is the toy protocol with a Sniffer, so an auto listener can pick
// it: a toy request opens with a length below 16 MiB (a zero first byte)
// and its kind (1 or 3) at byte 4. It records, by the request's "via"
// header, whether each request was decoded on an event loop.
type toyAuto struct{ toy.Codec }

func (toyAuto) Sniff(prefix []byte) (match, sure bool) {
	switch {
	case len(prefix) > 0 && prefix[0] != 0:
		return false, true
	case len(prefix) < 5:
		return false, false
	}
	k := prefix[4]
	return k == toy.KindRequest || k == toy.KindOneway, true
}

func (c toyAuto) Decode(frame []byte) (*codec.Message, error) {
	m, err := c.Codec.Decode(frame)
	if err == nil && m.Kind == codec.KindRequest {
		if via, ok := m.Get("via"); ok {
			buf := make([]byte, 16<<10)
			readers.saw(via, strings.Contains(string(buf[:runtime.Stack(buf, false)]), "netloop.(*loop)"))
		}
	}
	return m, err
}

// readers counts, by "via", the requests decoded on an event loop and off
// one.
var readers readCounts

type readCounts struct {
	mu     sync.Mutex
	onLoop map[string]int
	off    map[string]int
}

func (r *readCounts) saw(via string, onLoop bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.onLoop == nil {
		r.onLoop, r.off = map[string]int{}, map[string]int{}
	}
	if onLoop {
		r.onLoop[via]++
	} else {
		r.off[via]++
	}
}

func (r *readCounts) get(via string) (onLoop, off int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.onLoop[via], r.off[via]
}

func init() {
	codec.Register(codec.Protocol{Name: "toy-auto", Ordering: codec.ByID, MetricAttribute: "method",
		New: func(opts codec.Options, p codec.Peer) (codec.Codec, error) {
			c, err := toy.New(opts, p)
			if err != nil {
				return nil, err
			}
			return toyAuto{c.(toy.Codec)}, nil
		}})
}

// autoListener is a listener whose codec is "auto".
func autoListener(name, routes string, extra obj) obj {
	l := listener(name, routes, extra)
	l["filter_chains"].([]obj)[0]["filters"].([]obj)[0]["typed_config"].(obj)["codec"] = codec.Auto
	return l
}

// An auto listener serves a caller whose first bytes are a protocol it
// sniffs with that protocol: its routes, its upstream pools, its metrics.
func TestAutoListenerServesTheSniffedProtocol(t *testing.T) {
	a, _ := named(t, "a")
	b, _ := named(t, "b")
	p := start(t, []obj{autoListener("in", "r", nil)},
		[]obj{routeConfig("r",
			route("to-b", match("env", "canary"), obj{"cluster": "b"}),
			route("all", nil, obj{"cluster": "a"}))},
		[]obj{cluster("a", "", a.Addr()), cluster("b", "", b.Addr())})
	for i := range 3 {
		c := dial(t, p.Addr(t, "in"))
		if got := answeredBy(t, c, map[string]string{"method": "m"}); got != "a" {
			t.Fatalf("connection %d: answered by %s, want a", i, got)
		}
		if got := answeredBy(t, c, map[string]string{"env": "canary"}); got != "b" {
			t.Fatalf("connection %d: canary answered by %s, want b", i, got)
		}
	}
	if got, want := metricLine(t, p, `rosetta_downstream_sniffed_total{listener="in",protocol="toy-auto"}`), `rosetta_downstream_sniffed_total{listener="in",protocol="toy-auto"} 3`; got != want {
		t.Errorf("metrics: %q, want %q", got, want)
	}
	if got, want := metricLine(t, p, `rosetta_operations_total{listener="in",operation="m",status="ok"}`), `rosetta_operations_total{listener="in",operation="m",status="ok"} 3`; got != want {
		t.Errorf("metrics: %q, want %q (the chosen protocol's operation attribute)", got, want)
	}
}

// A caller whose first bytes no protocol claims, or that sends too little
// to tell, is closed, and the reason is counted; other connections carry
// on.
func TestAutoListenerClosesWhatItCannotTell(t *testing.T) {
	a, _ := named(t, "a")
	p := start(t, []obj{
		autoListener("in", "r", nil),
		onLoopback2(autoListener("slow", "r", obj{"idle_timeout": "0.2s", "frame_timeout": "0.2s"})),
	},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "a"}))},
		[]obj{cluster("a", "", a.Addr())})
	good := dial(t, p.Addr(t, "in"))
	for _, tc := range []struct {
		name, listener, send, reason string
	}{
		{"HTTP", "in", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "no_match"},
		{"nothing", "slow", "", "silent"},
		{"half a head, then nothing", "slow", "\x00\x00", "undecided"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", p.Addr(t, tc.listener))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
			if !closedSoon(nc, 5*time.Second) {
				t.Fatal("the proxy kept the connection open")
			}
			want := `rosetta_downstream_sniff_failures_total{listener="` + tc.listener + `",reason="` + tc.reason + `"} 1`
			testutil.MustPoll(t, 5*time.Second, "the failure counted", func() (bool, error) {
				got := metricLine(t, p, want[:strings.Index(want, "}")+1])
				return got == want, fmt.Errorf("metrics: %q, want %q", got, want)
			})
			if got := answeredBy(t, good, nil); got != "a" {
				t.Fatalf("another connection after it: answered by %s", got)
			}
		})
	}
}

// A connection of an auto listener is read where one of a listener that
// names its codec is: on an event loop when the loops are on (Linux, not
// --event-loops=false), since sniffing is the connection's codec until it
// decides, not a reader of its own.
func TestAutoConnectionsAreReadWhereNamedOnesAre(t *testing.T) {
	a, _ := named(t, "a")
	fixed := listener("named", "r", nil)
	fixed["filter_chains"].([]obj)[0]["filters"].([]obj)[0]["typed_config"].(obj)["codec"] = "toy-auto"
	p := start(t, []obj{autoListener("auto", "r", nil), onLoopback2(fixed)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "a"}))},
		[]obj{cluster("a", "", a.Addr())})
	for _, l := range []string{"auto", "named"} {
		c := dial(t, p.Addr(t, l))
		for range 5 {
			if got := answeredBy(t, c, map[string]string{"via": "loop-test-" + l}); got != "a" {
				t.Fatalf("%s: answered by %s", l, got)
			}
		}
	}
	autoOn, autoOff := readers.get("loop-test-auto")
	namedOn, namedOff := readers.get("loop-test-named")
	if autoOn+autoOff != 5 || namedOn+namedOff != 5 {
		t.Fatalf("requests seen: auto %d+%d, named %d+%d; want 5 each", autoOn, autoOff, namedOn, namedOff)
	}
	if (autoOn > 0) != (namedOn > 0) {
		t.Errorf("auto connection read on a loop %d of 5 times, a named one %d", autoOn, namedOn)
	}
	if runtime.GOOS == "linux" && netloop.DefaultOptions().EventLoops && autoOn != 5 {
		t.Errorf("auto connection read on a loop %d of 5 times with the loops on", autoOn)
	}
}

// "auto" is a codec name a listener may give; its options are checked
// against every protocol it may pick.
func TestAutoListenerConfig(t *testing.T) {
	validate := func(opts map[string]string) error {
		l := autoListener("in", "", obj{"route_config": obj{"name": "r"}, "codec_options": opts})
		boot, err := config.Parse([]byte(configJSON(t, []obj{l}, nil, nil)))
		if err != nil {
			t.Fatal(err)
		}
		return proxy.Validate(boot.Resources)
	}
	if err := validate(nil); err != nil {
		t.Fatalf("an auto listener: %v", err)
	}
	if err := validate(map[string]string{"sniff-ab.x": "1"}); err != nil {
		t.Fatalf("an auto listener with one protocol's option: %v", err)
	}
	for opts, want := range map[string]string{
		"nope.x": `filter rosetta.metaprotocol: codec_options: nope.*: "nope" is not a protocol this proxy can sniff`,
		"y":      `filter rosetta.metaprotocol: codec_options: for `,
	} {
		err := validate(map[string]string{opts: "1"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("option %s: %v, want an error with %q", opts, err, want)
		}
	}
}

// An HBONE stream to an auto listener's destination is sniffed as a socket
// is: on the HTTP/2 connection's frame reader that feeds it, and one whose
// first bytes no protocol claims ends.
func TestAutoListenerServesHBONEStreams(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	a, _ := named(t, "a")
	cfg := configJSON(t,
		[]obj{withAuthorities(addressless(autoListener("mixed", "r", nil)), otherVIP)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "a"}))},
		[]obj{cluster("a", "", a.Addr())})
	p, addr := hboneProxy(t, ca, cfg)
	cc, err := dialHBONE(t, addr, hboneTLS(workload(t, ca, callerID)))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := mustConnect(t, cc, otherVIP)
	if got := answeredBy(t, c, map[string]string{"method": "hi"}); got != "a" {
		t.Fatalf("answered by %q", got)
	}
	_, tn := mustConnect(t, cc, otherVIP)
	if _, err := tn.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, tn)
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a stream whose bytes no protocol claims stayed open")
	}
	for _, want := range []string{
		`rosetta_downstream_sniffed_total{listener="mixed",protocol="toy-auto"} 1`,
		`rosetta_downstream_sniff_failures_total{listener="mixed",reason="no_match"} 1`,
	} {
		testutil.MustPoll(t, 5*time.Second, "counted", func() (bool, error) {
			got := metricLine(t, p, want[:strings.Index(want, "}")+1])
			return got == want, fmt.Errorf("metrics: %q, want %q", got, want)
		})
	}
}
