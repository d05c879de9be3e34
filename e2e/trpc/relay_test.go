package trpc_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	trpc "trpc.group/trpc-go/trpc-go"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// relay is a recording TCP forwarder: a real client talks to it, it talks to
// a real server, and it keeps every byte of both directions so a test can cut
// the recording into frames with trpc-go's own framer.
type relay struct {
	addr string
	mu   sync.Mutex
	up   bytes.Buffer // client to server
	down bytes.Buffer // server to client
}

func startRelay(t testing.TB, target string) *relay {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: lis.Addr().String()}
	var wg sync.WaitGroup
	var conns []net.Conn
	var connsMu sync.Mutex
	t.Cleanup(func() {
		lis.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			connsMu.Lock()
			conns = append(conns, in, out)
			connsMu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); r.pipe(out, in, &r.up) }()
			go func() { defer wg.Done(); r.pipe(in, out, &r.down) }()
		}
	}()
	return r
}

// pipe copies src to dst, recording each chunk before forwarding it, so a
// byte the peer has seen is always in the recording.
func (r *relay) pipe(dst, src net.Conn, rec *bytes.Buffer) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			rec.Write(buf[:n])
			r.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// frames cuts a recording into whole frames with trpc-go's framer.
func frames(t testing.TB, rec []byte) [][]byte {
	t.Helper()
	fr := trpc.DefaultFramerBuilder.New(bytes.NewReader(rec))
	var out [][]byte
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out
		}
		if err != nil {
			t.Fatalf("trpc-go framer: %v", err)
		}
		out = append(out, append([]byte(nil), f...))
	}
}

// waitFrames polls until the relay has recorded at least up and down whole
// frames, and returns them.
func (r *relay) waitFrames(t testing.TB, up, down int) (ups, downs [][]byte) {
	t.Helper()
	testutil.MustPoll(t, 10*time.Second, "the relay's frames", func() (bool, error) {
		r.mu.Lock()
		u, d := append([]byte(nil), r.up.Bytes()...), append([]byte(nil), r.down.Bytes()...)
		r.mu.Unlock()
		ups, downs = frames(t, u), frames(t, d)
		return len(ups) >= up && len(downs) >= down, fmt.Errorf("relay recorded %d/%d frames up and %d/%d down", len(ups), up, len(downs), down)
	})
	return ups, downs
}
