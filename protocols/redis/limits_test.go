package redis

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// declared is a bulk length a peer may claim within a listener's 1 GiB
// frame limit, and below wire.HardLimit, so only the codec stands between
// the claim and a buffer of that size.
const declared = 60 << 20

// hostileFrames start a frame that claims declared bytes and send 2 of them:
// a client's command and a server's answer.
var hostileFrames = []struct {
	name string
	peer codec.Peer
	in   string
}{
	{"command", codec.PeerClient, "*2\r\n$3\r\nGET\r\n$" + strconv.Itoa(declared) + "\r\nab"},
	{"answer", codec.PeerServer, "$" + strconv.Itoa(declared) + "\r\nab"},
	{"answer in an array", codec.PeerServer, "*2\r\n$1\r\na\r\n$" + strconv.Itoa(declared) + "\r\nab"},
}

// TestSplitNeedGrowsWithBytesReceived: Split never asks for more than what
// has arrived (or minGrowth), whatever length the frame claims.
func TestSplitNeedGrowsWithBytesReceived(t *testing.T) {
	opts := codec.Options{OptMaxFrameBytes: strconv.Itoa(1 << 30)}
	for _, tc := range hostileFrames {
		t.Run(tc.name, func(t *testing.T) {
			c := newCodec(t, opts, tc.peer)
			buf := []byte(tc.in)
			sp, err := c.Split(buf)
			if err != nil || sp.Need != minGrowth {
				t.Fatalf("Split of %d bytes = %+v, %v; want Need %d", len(buf), sp, err, minGrowth)
			}
			// With 1 MiB received it asks for 1 MiB more: twice what came.
			buf = append(buf, make([]byte, 1<<20)...)
			if sp, err := c.Split(buf); err != nil || sp.Need != len(buf) {
				t.Fatalf("Split of %d bytes = %+v, %v; want Need %d", len(buf), sp, err, len(buf))
			}
		})
	}
}

// TestDeclaredLengthAllocatesNoBuffer: the proxy's frame reader over a
// connection that claims a 60 MiB frame and then ends allocates about what
// arrived, not what was claimed.
func TestDeclaredLengthAllocatesNoBuffer(t *testing.T) {
	opts := codec.Options{OptMaxFrameBytes: strconv.Itoa(1 << 30)}
	for _, tc := range hostileFrames {
		t.Run(tc.name, func(t *testing.T) {
			r := wire.NewReader(bytes.NewReader([]byte(tc.in)), newCodec(t, opts, tc.peer))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := r.Next()
			runtime.ReadMemStats(&after)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Next = %v, want the unexpected EOF of a frame cut short", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Fatalf("reading %d bytes that claim a %d-byte frame allocated %d bytes", len(tc.in), declared, grew)
			}
		})
	}
}

// TestMergedAnswersAreCapped: a split MGET whose parts together exceed
// max_merged_bytes (by default max_frame_bytes) gets an error, not a merged
// answer the proxy had to hold whole, and its connection goes on working;
// with a higher max_merged_bytes the same MGET is answered.
func TestMergedAnswersAreCapped(t *testing.T) {
	const frame = 1 << 20
	a, b, proxy := twoServers(t, map[string]string{OptMaxFrameBytes: strconv.Itoa(frame)}, nil)
	cx := ctx(t)
	c := goredis.NewClient(&goredis.Options{Addr: proxy, PoolSize: 1, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	big := strings.Repeat("v", 600<<10) // each part fits a frame, the two do not
	for k, v := range map[string]string{"a:big": big, "b:big": big, "a:small": "x", "b:small": "y"} {
		must(t, c.Set(cx, k, v, 0).Err(), "SET %s", k)
	}
	want := "ERR rosetta: the answers to MGET come to more than 1048576 bytes (max_merged_bytes)"
	if err := c.MGet(cx, "a:big", "b:big").Err(); err == nil || err.Error() != want {
		t.Fatalf("MGET of two 600 KiB values = %v, want %s", err, want)
	}
	vals, err := c.MGet(cx, "a:small", "b:small").Result()
	if err != nil || len(vals) != 2 || vals[0] != "x" || vals[1] != "y" {
		t.Fatalf("MGET on the same connection afterwards = %v, %v; want [x y]", vals, err)
	}

	roomy := startProxy(t, map[string]string{OptMaxFrameBytes: strconv.Itoa(frame), OptMaxMergedBytes: strconv.Itoa(4 * frame)},
		[]obj{prefixRoute("b", "b:", "b", nil), prefixRoute("rest", "", "a", nil)},
		clusterConfig("a", a.Addr), clusterConfig("b", b.Addr))
	vals, err = client(t, roomy).MGet(cx, "a:big", "b:big").Result()
	if err != nil || len(vals) != 2 || vals[0] != big || vals[1] != big {
		t.Fatalf("MGET under max_merged_bytes %d: %d values, %v", 4*frame, len(vals), err)
	}
}
