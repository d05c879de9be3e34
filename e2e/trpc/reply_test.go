package trpc_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"trpc.group/trpc-go/trpc-go/client"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	rtrpc "github.com/rosetta-mesh/rosetta/protocols/trpc"
)

// replyServer answers every request with our codec's local reply for the
// status named in the request's "x-status" trans_info entry.
func replyServer(t *testing.T) string {
	t.Helper()
	p, ok := codec.Lookup(rtrpc.Name)
	if !ok {
		t.Fatal("trpc codec not registered")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close() // trpc-go's pooled connections stay open otherwise
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				c, err := p.New(nil, codec.PeerClient)
				if err != nil {
					t.Error(err)
					return
				}
				serveReplies(t, nc, c)
			}()
		}
	}()
	return lis.Addr().String()
}

func serveReplies(t *testing.T, nc net.Conn, c codec.Codec) {
	var buf []byte
	chunk := make([]byte, 4096)
	for {
		n, err := nc.Read(chunk)
		if err != nil {
			return
		}
		buf = append(buf, chunk[:n]...)
		for {
			sp, err := c.Split(buf)
			if err != nil {
				t.Errorf("Split: %v", err)
				return
			}
			if sp.Len == 0 {
				break
			}
			m, err := c.Decode(append([]byte(nil), buf[:sp.Len]...))
			buf = buf[sp.Len:]
			if err != nil {
				t.Errorf("Decode: %v", err)
				return
			}
			if m.Kind != codec.KindRequest {
				continue // stream frames after a refused INIT
			}
			name, _ := m.Get("x-status")
			rep, err := c.Reply(m, statusNamed(name), "rosetta: "+name)
			if err != nil {
				t.Errorf("Reply: %v", err)
				return
			}
			out, err := c.Encode(nil, rep)
			if err != nil {
				t.Errorf("Encode: %v", err)
				return
			}
			if _, err := nc.Write(out); err != nil {
				return
			}
		}
	}
}

var errorStatuses = []codec.Status{
	codec.StatusNoRoute, codec.StatusNoUpstream, codec.StatusTimeout, codec.StatusOverloaded,
	codec.StatusRateLimited, codec.StatusUpstreamReset, codec.StatusBadRequest,
	codec.StatusUnauthorized, codec.StatusFault, codec.StatusError,
}

func statusNamed(name string) codec.Status {
	for _, s := range errorStatuses {
		if s.String() == name {
			return s
		}
	}
	return codec.StatusError
}

// TestLocalRepliesThroughTrpcGoClient sends real trpc-go calls to a server
// that answers only with our local replies, and checks trpc-go reports each
// as a framework error with the code of README.md's table.
func TestLocalRepliesThroughTrpcGoClient(t *testing.T) {
	addr := replyServer(t)
	ctx := context.Background()
	for _, st := range errorStatuses {
		want := int(rtrpc.RetCode(st))
		_, err := callHello(ctx, sayHello, "x", clientOpts(addr, client.WithMetaData("x-status", []byte(st.String())))...)
		frameError(t, err, want, "rosetta: "+st.String())

		// A stream INIT refused by a local reply fails trpc-go's NewStream or
		// its first receive with the same error.
		_, err = chatOnce(ctx, []string{"hi"}, clientOpts(addr, client.WithMetaData("x-status", []byte(st.String())))...)
		frameError(t, err, want, "rosetta: "+st.String())
	}
	// Multiplexed trpc-go clients match responses by the head's stream id.
	_, err := callHello(ctx, sayHello, "x", clientOpts(addr, client.WithMultiplexed(true),
		client.WithMetaData("x-status", []byte("timeout")))...)
	frameError(t, err, int(rtrpc.RetServerTimeout), "rosetta: timeout")
	if err != nil && !strings.Contains(err.Error(), "rosetta: timeout") {
		t.Errorf("error text %q lacks the detail", err)
	}
}
