// Package codectest is the conformance kit every Rosetta codec passes.
//
// A codec's test fills a Suite with real captures of its protocol and calls
// Run. The kit checks the codec contract documented in package codec: frames
// found when fed one byte at a time and when split at every offset, encode and
// decode round trips with a rewritten request id, errors (never panics or
// unbounded lengths) on garbage, truncated and oversized input, and local
// replies that the protocol's real client library accepts.
package codectest

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Suite describes one codec under test.
type Suite struct {
	// Protocol is the registered protocol; Options its codec options.
	Protocol codec.Protocol
	Options  codec.Options
	// Requests and Responses are whole frames captured from the protocol's
	// real implementation (testdata/).
	Requests  [][]byte
	Responses [][]byte
	// Oversized is a frame head that claims more than the codec's limit.
	Oversized []byte
	// MaxFrame is the codec's frame limit with Options; defaults to
	// codec.DefaultMaxFrame.
	MaxFrame int
	// Mutation, when set, is an attribute that Encode must write on a request.
	Mutation *codec.Attr
	// CheckReply decodes a local reply with the protocol's real client library
	// and fails the test when that library would not accept it as an error
	// answer to req.
	CheckReply func(t *testing.T, req *codec.Message, status codec.Status, reply []byte)
	// ReplyStatuses are the statuses to build local replies for; defaults to
	// every error status.
	ReplyStatuses []codec.Status
}

// Run runs the conformance checks as subtests.
func Run(t *testing.T, s Suite) {
	t.Helper()
	if len(s.Requests) == 0 || len(s.Responses) == 0 {
		t.Fatal("codectest: the suite needs captured requests and responses")
	}
	if s.CheckReply == nil {
		t.Fatal("codectest: the suite needs CheckReply with the protocol's real client library")
	}
	if s.MaxFrame == 0 {
		s.MaxFrame = codec.DefaultMaxFrame
	}
	sides := []side{{codec.PeerClient, s.Requests}, {codec.PeerServer, s.Responses}}
	t.Run("ByteAtATime", func(t *testing.T) { each(t, s, sides, byteAtATime) })
	t.Run("SplitAtEveryOffset", func(t *testing.T) { each(t, s, sides, splitAtEveryOffset) })
	t.Run("RoundTrip", func(t *testing.T) { each(t, s, sides, roundTrip) })
	t.Run("Truncated", func(t *testing.T) { each(t, s, sides, truncated) })
	t.Run("Garbage", func(t *testing.T) { garbage(t, s, sides) })
	t.Run("Oversized", func(t *testing.T) { oversized(t, s) })
	t.Run("Reply", func(t *testing.T) { reply(t, s) })
	if s.Mutation != nil {
		t.Run("Mutation", func(t *testing.T) { mutation(t, s) })
	}
}

// side is the frames a codec reads on one kind of connection: requests on a
// caller's (codec.PeerClient), answers on one to a server (codec.PeerServer).
type side struct {
	peer   codec.Peer
	frames [][]byte
}

// each runs check on the frames of each side.
func each(t *testing.T, s Suite, sides []side, check func(*testing.T, Suite, codec.Peer, [][]byte)) {
	for _, sd := range sides {
		t.Run(sd.peer.String(), func(t *testing.T) { check(t, s, sd.peer, sd.frames) })
	}
}

func newCodec(t *testing.T, s Suite, peer codec.Peer) codec.Codec {
	t.Helper()
	c, err := s.Protocol.New(s.Options, peer)
	if err != nil {
		t.Fatalf("New(%v, %v): %v", s.Options, peer, err)
	}
	return c
}

// across is the peer of the connection a message read from peer is written
// to: a caller's request goes to a server, a server's answer to a caller.
func across(peer codec.Peer) codec.Peer {
	if peer == codec.PeerClient {
		return codec.PeerServer
	}
	return codec.PeerClient
}

func byteAtATime(t *testing.T, s Suite, peer codec.Peer, frames [][]byte) {
	for fi, f := range frames {
		c := newCodec(t, s, peer)
		for i := 0; i < len(f); i++ {
			sp, err := c.Split(f[:i])
			if err != nil {
				t.Fatalf("frame %d: Split of the first %d of %d bytes: %v", fi, i, len(f), err)
			}
			if sp.Len != 0 || sp.Need <= 0 {
				t.Fatalf("frame %d: Split of the first %d of %d bytes = %+v, want Need > 0", fi, i, len(f), sp)
			}
			if i+sp.Need > len(f) {
				t.Fatalf("frame %d: Split of %d bytes asks for %d more, past the frame's end at %d", fi, i, sp.Need, len(f))
			}
		}
		sp, err := c.Split(f)
		if err != nil || sp.Len != len(f) {
			t.Fatalf("frame %d: Split of the whole frame = %+v, %v; want Len %d", fi, sp, err, len(f))
		}
	}
}

// extract reads frames from stream delivered in the given chunks, as the
// proxy's connection reader does.
func extract(t *testing.T, c codec.Codec, chunks ...[]byte) [][]byte {
	t.Helper()
	var buf, out []byte
	var got [][]byte
	for _, ch := range chunks {
		buf = append(buf, ch...)
		for len(buf) > 0 {
			sp, err := c.Split(buf)
			if err != nil {
				t.Fatalf("Split: %v", err)
			}
			if sp.Len == 0 {
				break
			}
			out = append([]byte(nil), buf[:sp.Len]...)
			got = append(got, out)
			buf = buf[sp.Len:]
		}
	}
	if len(buf) != 0 {
		t.Fatalf("%d bytes left over after the last frame", len(buf))
	}
	return got
}

func splitAtEveryOffset(t *testing.T, s Suite, peer codec.Peer, frames [][]byte) {
	for i := range frames {
		a, b := frames[i], frames[(i+1)%len(frames)]
		stream := append(append([]byte{}, a...), b...)
		for cut := 0; cut <= len(stream); cut++ {
			got := extract(t, newCodec(t, s, peer), stream[:cut], stream[cut:])
			if len(got) != 2 || !bytes.Equal(got[0], a) || !bytes.Equal(got[1], b) {
				t.Fatalf("frames %d+%d cut at %d: got %d frames, want the two originals", i, (i+1)%len(frames), cut, len(got))
			}
		}
	}
}

func decode(t *testing.T, c codec.Codec, f []byte) *codec.Message {
	t.Helper()
	m, err := c.Decode(append([]byte(nil), f...))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if m.Kind == codec.KindUnknown || m.Attrs == nil {
		t.Fatalf("Decode gave kind %v, attrs %v", m.Kind, m.Attrs)
	}
	return m
}

func encode(t *testing.T, c codec.Codec, m *codec.Message) []byte {
	t.Helper()
	out, err := c.Encode(nil, m)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return out
}

func attrs(a codec.Attributes) map[string]string {
	out := map[string]string{}
	a.Range(func(k, v string) bool { out[k] = v; return true })
	return out
}

func roundTrip(t *testing.T, s Suite, peer codec.Peer, frames [][]byte) {
	for fi, f := range frames {
		c, out := newCodec(t, s, peer), newCodec(t, s, across(peer))
		m := decode(t, c, f)
		if out := encode(t, out, m); !bytes.Equal(out, f) {
			t.Fatalf("frame %d: Encode of an unchanged message differs from the frame", fi)
		}
		want := attrs(m.Attrs)
		newID := m.ID ^ 0x5a5a
		if m.Kind == codec.KindHeartbeat || m.Kind == codec.KindHeartbeatResponse || m.ID == 0 {
			newID = m.ID + 7
		}
		if s.Protocol.Ordering == codec.InOrder {
			// In-order protocols (Redis) carry no id on the wire: the
			// proxy pairs by position, so there is nothing to rewrite.
			newID = m.ID
		}
		m.ID = newID
		m2 := decode(t, c, encode(t, out, m))
		if m2.ID != newID || m2.Kind != m.Kind || m2.Status != m.Status {
			t.Fatalf("frame %d: after rewriting the id to %d, decoded id %d kind %v status %v; want kind %v status %v",
				fi, newID, m2.ID, m2.Kind, m2.Status, m.Kind, m.Status)
		}
		if got := attrs(m2.Attrs); !sameMap(got, want) {
			t.Fatalf("frame %d: attributes changed by the round trip: %v, want %v", fi, got, want)
		}
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func truncated(t *testing.T, s Suite, peer codec.Peer, frames [][]byte) {
	for fi, f := range frames {
		c := newCodec(t, s, peer)
		for i := 0; i < len(f); i++ {
			if _, err := c.Decode(append([]byte(nil), f[:i]...)); err == nil {
				t.Fatalf("frame %d: Decode of the first %d of %d bytes succeeded, want an error", fi, i, len(f))
			}
		}
	}
}

// garbage feeds random bytes and randomly corrupted captures; any answer but a
// panic or a request to buffer past the limit is fine.
func garbage(t *testing.T, s Suite, sides []side) {
	rng := rand.New(rand.NewSource(1))
	for _, sd := range sides {
		inputs := make([][]byte, 0, 1000)
		for i := 0; i < 500; i++ {
			b := make([]byte, rng.Intn(64))
			rng.Read(b)
			inputs = append(inputs, b)
		}
		for i := 0; i < 500; i++ {
			f := append([]byte(nil), sd.frames[rng.Intn(len(sd.frames))]...)
			for n := rng.Intn(4) + 1; n > 0 && len(f) > 0; n-- {
				f[rng.Intn(len(f))] = byte(rng.Intn(256))
			}
			inputs = append(inputs, f)
		}
		for _, in := range inputs {
			garbageOne(t, s, newCodec(t, s, sd.peer), in)
		}
	}
}

// garbageOne checks that c survives in: no panic, no length past the limit.
func garbageOne(t *testing.T, s Suite, c codec.Codec, in []byte) {
	sp, err := c.Split(in)
	if err != nil {
		return
	}
	if sp.Need > s.MaxFrame || sp.Len > len(in) {
		t.Fatalf("Split(%x) = %+v: past the limit %d or the input", in, sp, s.MaxFrame)
	}
	if sp.Len > 0 {
		if m, err := c.Decode(in[:sp.Len]); err == nil {
			_, _ = c.Encode(nil, m) // must not panic either
			attrs(m.Attrs)
		}
	}
}

func oversized(t *testing.T, s Suite) {
	if len(s.Oversized) == 0 {
		t.Fatal("the suite needs an Oversized frame head")
	}
	_, err := newCodec(t, s, codec.PeerClient).Split(s.Oversized)
	if !errors.Is(err, codec.ErrTooLarge) {
		t.Fatalf("Split of an oversized frame head: %v, want an error wrapping codec.ErrTooLarge", err)
	}
}

var errorStatuses = []codec.Status{
	codec.StatusNoRoute, codec.StatusNoUpstream, codec.StatusTimeout, codec.StatusOverloaded,
	codec.StatusRateLimited, codec.StatusUpstreamReset, codec.StatusBadRequest,
	codec.StatusUnauthorized, codec.StatusFault,
}

func reply(t *testing.T, s Suite) {
	statuses := s.ReplyStatuses
	if statuses == nil {
		statuses = errorStatuses
	}
	checked := 0
	for _, f := range s.Requests {
		c := newCodec(t, s, codec.PeerClient)
		req := decode(t, c, f)
		if req.Kind != codec.KindRequest {
			continue
		}
		for _, st := range statuses {
			rep, err := c.Reply(req, st, "rosetta: "+st.String())
			if err != nil || rep == nil {
				t.Fatalf("Reply(%v): %v, %v", st, rep, err)
			}
			wire := encode(t, c, rep)
			// The caller reads the reply as an answer from its server.
			client := newCodec(t, s, codec.PeerServer)
			if sp, err := client.Split(wire); err != nil || sp.Len != len(wire) {
				t.Fatalf("reply %v: Split = %+v, %v; want the whole %d bytes", st, sp, err, len(wire))
			}
			got := decode(t, client, wire)
			if got.Kind != codec.KindResponse || got.ID != req.ID || got.Status == codec.StatusOK {
				t.Fatalf("reply %v decoded as kind %v id %d status %v; want an error response to id %d", st, got.Kind, got.ID, got.Status, req.ID)
			}
			s.CheckReply(t, req, st, wire)
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no two-way request among the captures to build replies for")
	}
}

func mutation(t *testing.T, s Suite) {
	for _, f := range s.Requests {
		c, up := newCodec(t, s, codec.PeerClient), newCodec(t, s, codec.PeerServer)
		m := decode(t, c, f)
		if m.Kind != codec.KindRequest && m.Kind != codec.KindOneway {
			continue
		}
		m.Set(s.Mutation.Key, s.Mutation.Value)
		got := decode(t, c, encode(t, up, m))
		if v, ok := got.Get(s.Mutation.Key); !ok || v != s.Mutation.Value {
			t.Fatalf("after the mutation %s=%s, decoded %q, %v", s.Mutation.Key, s.Mutation.Value, v, ok)
		}
		return
	}
	t.Fatal("no request among the captures to mutate")
}
