package thrift

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/protocols/thrift/internal/echo"
)

// The captures in testdata/<combo>/ are written by Apache Thrift's Go library
// driving the code `thrift --gen go` (0.17) made from testdata/echo.thrift:
// the generated client on one end of a pipe, the generated processor on the
// other, every byte the processor reads and writes recorded.
//
//	go test ./protocols/thrift -run TestCaptures -update
var update = flag.Bool("update", false, "rewrite the testdata captures")

// capture is one frame and what Decode must find in it.
type capture struct {
	name    string
	kind    codec.Kind
	status  codec.Status
	id      uint64
	method  string
	service string            // set for a multiplexed name
	headers map[string]string // THeader info headers (header combos only)
}

// requestHeaders are the info headers the client sends on ping; fire sends
// only the first.
var requestHeaders = map[string]string{"x-trace": "t-1", "x-user": "ann"}

// specs lists a combination's captures, requests then responses, in the order
// the session makes them. THeader requests carry info headers.
func specs(c combo) (requests, responses []capture) {
	h := func(m map[string]string) map[string]string {
		if c.transport != "header" {
			return nil
		}
		return m
	}
	requests = []capture{
		{name: "ping_request", kind: codec.KindRequest, id: 1, method: "ping", headers: h(requestHeaders)},
		{name: "fire_call", kind: codec.KindRequest, id: 2, method: "fire", headers: h(map[string]string{"x-trace": "t-1"})},
		{name: "fire_oneway", kind: codec.KindOneway, id: 6, method: "fire", headers: h(map[string]string{"x-trace": "t-1"})},
		{name: "echo_request", kind: codec.KindRequest, id: 3, method: "echo"},
		{name: "oops_request", kind: codec.KindRequest, id: 4, method: "echo"},
		{name: "nosuch_request", kind: codec.KindRequest, id: 5, method: "nosuch"},
		{name: "mux_ping_request", kind: codec.KindRequest, id: 1, method: "ping", service: "Echo"},
	}
	responses = []capture{
		{name: "ping_reply", kind: codec.KindResponse, id: 1, method: "ping"},
		{name: "echo_reply", kind: codec.KindResponse, id: 3, method: "echo"},
		{name: "oops_reply", kind: codec.KindResponse, id: 4, method: "echo"},
		{name: "nosuch_exception", kind: codec.KindResponse, status: codec.StatusError, id: 5, method: "nosuch"},
		// Multiplexed processors answer with the bare method name.
		{name: "mux_ping_reply", kind: codec.KindResponse, id: 1, method: "ping"},
	}
	return requests, responses
}

func capturePath(c combo, name string) string {
	return filepath.Join("testdata", c.name, name+".bin")
}

func readCapture(t testing.TB, c combo, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(capturePath(c, name))
	if err != nil {
		t.Fatalf("%v (run go test ./protocols/thrift -run TestCaptures -update)", err)
	}
	return b
}

// loadCaptures reads a combination's requests and responses.
func loadCaptures(t testing.TB, c combo) (requests, responses [][]byte) {
	reqs, resps := specs(c)
	for _, s := range reqs {
		requests = append(requests, readCapture(t, c, s.name))
	}
	for _, s := range resps {
		responses = append(responses, readCapture(t, c, s.name))
	}
	return requests, responses
}

// TestCaptures drives the generated client and processor for every
// combination. With -update it writes testdata; without, it fails when the
// library now writes something the captures do not hold.
func TestCaptures(t *testing.T) {
	for _, c := range combos {
		t.Run(c.name, func(t *testing.T) {
			got := record(t, c)
			if *update {
				if err := os.MkdirAll(filepath.Join("testdata", c.name), 0o755); err != nil {
					t.Fatal(err)
				}
				for name, b := range got {
					if err := os.WriteFile(capturePath(c, name), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			for name, b := range got {
				want := readCapture(t, c, name)
				if !sameFrame(t, c, b, want) {
					t.Errorf("%s: the library now writes\n% x\nthe capture holds\n% x", name, b, want)
				}
			}
		})
	}
}

// sameFrame compares two frames. THeader writes its info headers from a Go
// map, in random order, so those frames are compared as the library reads
// them: the same headers and the same payload.
func sameFrame(t *testing.T, c combo, a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if c.transport != "header" || len(a) != len(b) {
		return false
	}
	ha, pa := libReadHeader(t, a)
	hb, pb := libReadHeader(t, b)
	return maps.Equal(ha, hb) && bytes.Equal(pa, pb)
}

// libReadHeader reads a THeader frame with the library's THeaderTransport.
func libReadHeader(t *testing.T, frame []byte) (thrift.THeaderMap, []byte) {
	t.Helper()
	buf := thrift.NewTMemoryBuffer()
	buf.Write(frame)
	ht := thrift.NewTHeaderTransportConf(buf, &thrift.TConfiguration{})
	if err := ht.ReadFrame(context.Background()); err != nil {
		t.Fatalf("THeaderTransport.ReadFrame: %v", err)
	}
	payload, err := io.ReadAll(ht)
	if err != nil {
		t.Fatal(err)
	}
	return ht.GetReadHeaders(), payload
}

// tap records what the processor's end of the pipe reads and writes.
type tap struct {
	net.Conn
	mu      sync.Mutex
	in, out []byte
}

func (t *tap) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	t.mu.Lock()
	t.in = append(t.in, p[:n]...)
	t.mu.Unlock()
	return n, err
}

func (t *tap) Write(p []byte) (int, error) {
	n, err := t.Conn.Write(p)
	t.mu.Lock()
	t.out = append(t.out, p[:n]...)
	t.mu.Unlock()
	return n, err
}

func (t *tap) take() (in, out []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	in, out = t.in, t.out
	t.in, t.out = nil, nil
	return in, out
}

// record makes one combination's captures.
func record(t *testing.T, c combo) map[string][]byte {
	cc, sc := net.Pipe()
	t.Cleanup(func() { cc.Close(); sc.Close() })
	tp := &tap{Conn: sc}
	cfg := c.config()
	sprot := c.libProtocol(thrift.NewTSocketFromConnConf(tp, cfg))
	proc := processor("server")
	processed := make(chan struct{}, 1)
	go func() {
		for {
			_, err := proc.Process(context.Background(), sprot, sprot)
			var te thrift.TTransportException
			if errors.As(err, &te) {
				return
			}
			processed <- struct{}{}
		}
	}()
	cprot := c.libProtocol(thrift.NewTSocketFromConnConf(cc, cfg))
	std := thrift.NewTStandardClient(cprot, cprot)
	client := echo.NewEchoClient(std)
	mux := echo.NewEchoClient(thrift.NewTStandardClient(cprot, thrift.NewTMultiplexedProtocol(cprot, "Echo")))

	ctx := context.Background()
	withHeaders := func(h map[string]string) context.Context {
		ctx := ctx
		var keys []string
		for k, v := range h {
			ctx = thrift.SetHeader(ctx, k, v)
			keys = append(keys, k)
		}
		return thrift.SetWriteHeaderList(ctx, keys)
	}
	out := map[string][]byte{}
	call := func(req, resp string, fn func() error) error {
		errc := make(chan error, 1)
		go func() { errc <- fn() }()
		select {
		case <-processed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the processor did not finish", req)
		}
		var err error
		select {
		case err = <-errc:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the client did not finish", req)
		}
		in, written := tp.take()
		out[req] = in
		if resp != "" {
			out[resp] = written
		} else if len(written) != 0 {
			t.Fatalf("%s: the processor answered a oneway call", req)
		}
		return err
	}

	if err := call("ping_request", "ping_reply", func() error {
		v, err := client.Ping(withHeaders(requestHeaders), "hello")
		if err == nil && v != "server: pong hello" {
			err = errors.New("ping answered " + v)
		}
		return err
	}); err != nil {
		t.Fatalf("ping: %v", err)
	}
	// Go's client sends a oneway call as a CALL message.
	if err := call("fire_call", "", func() error {
		return client.Fire(withHeaders(map[string]string{"x-trace": "t-1"}), "bang")
	}); err != nil {
		t.Fatalf("fire: %v", err)
	}
	// Other languages' clients (Java, Python, C++) send ONEWAY: the same
	// arguments with the library's protocol, as TStandardClient.Send would.
	if err := call("fire_oneway", "", func() error {
		return sendOneway(withHeaders(map[string]string{"x-trace": "t-1"}), cprot, 6, "fire", &echo.EchoFireArgs{X: "bang"})
	}); err != nil {
		t.Fatalf("oneway fire: %v", err)
	}
	if err := call("echo_request", "echo_reply", func() error {
		p, err := client.Echo(ctx, payload("hi"))
		if err == nil && (p.Text != "server: hi" || p.Inner == nil || len(p.Nested[5]) != 3) {
			err = errors.New("echo answered " + p.String())
		}
		return err
	}); err != nil {
		t.Fatalf("echo: %v", err)
	}
	var oops *echo.Oops
	if err := call("oops_request", "oops_reply", func() error {
		_, err := client.Echo(ctx, payload("oops"))
		return err
	}); !errors.As(err, &oops) {
		t.Fatalf("echo oops: %v, want the declared exception", err)
	}
	var ae thrift.TApplicationException
	if err := call("nosuch_request", "nosuch_exception", func() error {
		_, err := std.Call(ctx, "nosuch", &echo.EchoPingArgs{Msg: "?"}, &echo.EchoPingResult{})
		return err
	}); !errors.As(err, &ae) || ae.TypeId() != thrift.UNKNOWN_METHOD {
		t.Fatalf("nosuch: %v, want an UNKNOWN_METHOD TApplicationException", err)
	}
	if err := call("mux_ping_request", "mux_ping_reply", func() error {
		_, err := mux.Ping(ctx, "mux")
		return err
	}); err != nil {
		t.Fatalf("multiplexed ping: %v", err)
	}
	return out
}

// sendOneway writes a ONEWAY message as TStandardClient.Send writes a CALL,
// THeader info headers included.
func sendOneway(ctx context.Context, p thrift.TProtocol, seq int32, method string, args thrift.TStruct) error {
	if hp, ok := p.(*thrift.THeaderProtocol); ok {
		hp.ClearWriteHeaders()
		for _, k := range thrift.GetWriteHeaderList(ctx) {
			if v, ok := thrift.GetHeader(ctx, k); ok {
				hp.SetWriteHeader(k, v)
			}
		}
	}
	if err := p.WriteMessageBegin(ctx, method, thrift.ONEWAY, seq); err != nil {
		return err
	}
	if err := args.Write(ctx, p); err != nil {
		return err
	}
	if err := p.WriteMessageEnd(ctx); err != nil {
		return err
	}
	return p.Flush(ctx)
}
