package dubbopeer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

var greeter = Service{Interface: "org.example.Greeter", Version: "1.0.0"}

// echo answers "<method>(<args>) from <provider>" and fails on request.
func echo(name string) Handler {
	return func(ctx context.Context, req *Request) (any, error) {
		switch req.Method {
		case "fail":
			return nil, errors.New("it broke")
		case "status":
			return nil, &StatusError{Status: StatusServiceError, Message: "no such thing"}
		case "null":
			return nil, nil
		case "block":
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return fmt.Sprintf("%s%v from %s", req.Method, req.Args, name), nil
	}
}

func startProvider(t *testing.T, name string, h Handler) *Provider {
	t.Helper()
	p, err := Serve("127.0.0.1:0", name, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) *Consumer {
	t.Helper()
	c, err := Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCall: a call carries interface, version, method, arguments and
// attachments to the provider, and its value and the provider's attachments
// back.
func TestCall(t *testing.T) {
	var got *Request
	var mu sync.Mutex
	p := startProvider(t, "p1", func(ctx context.Context, req *Request) (any, error) {
		mu.Lock()
		got = req
		mu.Unlock()
		return "hi " + req.Args[0].(string), nil
	})
	c := dial(t, p.Addr())
	v, atts, err := c.Call(ctxT(t), greeter, "sayHello", []any{"bob", int32(7)}, map[string]string{"user": "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if v != "hi bob" || ProviderName(atts) != "p1" {
		t.Fatalf("got %v %v, want hi bob from p1", v, atts)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Interface != greeter.Interface || got.Version != "1.0.0" || got.Method != "sayHello" || got.Oneway {
		t.Fatalf("provider saw %+v", got)
	}
	if len(got.Args) != 2 || got.Args[1] != int32(7) || got.Attachments["user"] != "u1" || got.Attachments["path"] != greeter.Interface {
		t.Fatalf("provider saw args %#v attachments %v", got.Args, got.Attachments)
	}
}

// TestErrors: each way a call fails reaches the caller as its own error type.
func TestErrors(t *testing.T) {
	c := dial(t, startProvider(t, "p1", echo("p1")).Addr())
	ctx := ctxT(t)
	_, _, err := c.Call(ctx, greeter, "fail", nil, nil)
	var ex *Exception
	if !errors.As(err, &ex) || ex.Message != "it broke" {
		t.Fatalf("fail: got %v, want an exception 'it broke'", err)
	}
	_, _, err = c.Call(ctx, greeter, "status", nil, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != StatusServiceError || se.Message != "no such thing" {
		t.Fatalf("status: got %v, want status 70 'no such thing'", err)
	}
	v, _, err := c.Call(ctx, greeter, "null", nil, nil)
	if err != nil || v != nil {
		t.Fatalf("null: got %v, %v", v, err)
	}
	// The connection is still usable after all of these.
	if _, _, err := c.Call(ctx, greeter, "ok", nil, nil); err != nil {
		t.Fatal(err)
	}
}

// TestMultiplexing: responses that come back in another order than the
// calls went out still reach the right callers.
func TestMultiplexing(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	// A test that fails before it releases the slow call must not leave
	// the provider's close waiting on it until go test's timeout.
	free := func() { once.Do(func() { close(release) }) }
	p := startProvider(t, "p1", func(ctx context.Context, req *Request) (any, error) {
		if req.Method == "slow" {
			<-release
		}
		return req.Method + req.Args[0].(string), nil
	})
	t.Cleanup(free) // after the provider's own cleanup is registered: runs first
	c := dial(t, p.Addr())
	ctx := ctxT(t)
	slow := make(chan error, 1)
	go func() {
		v, _, err := c.Call(ctx, greeter, "slow", []any{"1"}, nil)
		if err == nil && v != "slow1" {
			err = fmt.Errorf("slow call got %v", v)
		}
		slow <- err
	}()
	testutil.Eventually(t, 5*time.Second, "the slow call to reach the provider", func() bool { return p.Calls() == 1 })
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				arg := fmt.Sprint(g*1000 + i)
				v, _, err := c.Call(ctx, greeter, "fast", []any{arg}, nil)
				if err == nil && v != "fast"+arg {
					err = fmt.Errorf("call %s got %v", arg, v)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	free()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// TestOnewayAndPing: a oneway call reaches the handler with no answer, and a
// heartbeat is answered by the provider.
func TestOnewayAndPing(t *testing.T) {
	seen := make(chan *Request, 1)
	p := startProvider(t, "p1", func(ctx context.Context, req *Request) (any, error) {
		seen <- req
		return "ignored", nil
	})
	c := dial(t, p.Addr())
	if err := c.Send(greeter, "notify", []any{"x"}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-seen:
		if !req.Oneway || req.Method != "notify" {
			t.Fatalf("provider saw %+v", req)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("oneway call never arrived")
	}
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestCancel: a caller that gives up gets its context's error; the late
// response is dropped and the connection stays usable.
func TestCancel(t *testing.T) {
	release := make(chan struct{})
	p := startProvider(t, "p1", func(ctx context.Context, req *Request) (any, error) {
		if req.Method == "late" {
			<-release
		}
		return "ok", nil
	})
	c := dial(t, p.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := c.Call(ctx, greeter, "late", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	close(release)
	if v, _, err := c.Call(ctxT(t), greeter, "now", nil, nil); err != nil || v != "ok" {
		t.Fatalf("got %v, %v", v, err)
	}
}

// TestProviderClose: closing a provider fails the calls in flight, ends its
// handlers' contexts, and refuses new connections.
func TestProviderClose(t *testing.T) {
	p, err := Serve("127.0.0.1:0", "p1", echo("p1"))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Call(ctxT(t), greeter, "block", nil, nil)
		done <- err
	}()
	testutil.Eventually(t, 5*time.Second, "the call to reach the provider", func() bool { return p.Calls() == 1 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, errClosed) {
		t.Fatalf("call in flight got %v, want a closed connection", err)
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Fatal("a closed provider still accepts connections")
	}
}

// TestPrepared: the pre-encoded fast path reports success without decoding
// and still decodes failures.
func TestPrepared(t *testing.T) {
	c := dial(t, startProvider(t, "p1", echo("p1")).Addr())
	ok, err := Prepare(greeter, "sayHello", []any{"x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := Prepare(greeter, "status", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for range 3 {
		if err := c.CallPrepared(ctx, ok); err != nil {
			t.Fatal(err)
		}
	}
	var se *StatusError
	if err := c.CallPrepared(ctx, bad); !errors.As(err, &se) || se.Status != StatusServiceError {
		t.Fatalf("got %v, want status 70", err)
	}
}

// TestBadInput: a provider closes a connection that sends garbage or an
// oversized length, without crashing; a body the library cannot read gets
// status 40 and the connection stays open.
func TestBadInput(t *testing.T) {
	p := startProvider(t, "p1", echo("p1"))
	for name, frame := range map[string][]byte{
		"bad magic": []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"oversized": {0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Write(frame); err != nil {
				t.Fatal(err)
			}
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := nc.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read got %v, want EOF", err)
			}
		})
	}
	t.Run("unreadable body", func(t *testing.T) {
		nc, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// A two-way request, id 9, whose body is the hessian2 int 1 where a
		// string is due.
		frame := []byte{0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0x91}
		if _, err := nc.Write(frame); err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		fr := newFrameReader(nc)
		h, _, err := fr.next()
		if err != nil {
			t.Fatal(err)
		}
		if h.ID != 9 || h.ResponseStatus != StatusBadRequest {
			t.Fatalf("got %+v, want id 9 status 40", h)
		}
	})
}

func BenchmarkCall(b *testing.B) {
	p, err := Serve("127.0.0.1:0", "p1", func(ctx context.Context, req *Request) (any, error) { return "hello", nil })
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	c, err := Dial(p.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	prep, err := Prepare(greeter, "sayHello", []any{"bob"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("Call", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := c.Call(ctx, greeter, "sayHello", []any{"bob"}, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("Prepared", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := c.CallPrepared(ctx, prep); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// TestServeStatic: the load-test provider answers every call with its one
// value, oneway calls with nothing, and heartbeats as any provider.
func TestServeStatic(t *testing.T) {
	p, err := ServeStatic("127.0.0.1:0", "static", "pong")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	ctx := ctxT(t)
	for _, m := range []string{"a", "b"} {
		v, atts, err := c.Call(ctx, greeter, m, nil, nil)
		if err != nil || v != "pong" || ProviderName(atts) != "static" {
			t.Fatalf("got %v %v %v", v, atts, err)
		}
	}
	if err := c.Send(greeter, "n", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "three calls", func() bool { return p.Calls() == 3 })
}
