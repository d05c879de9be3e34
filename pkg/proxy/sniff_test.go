package proxy

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// magicCodec is a test protocol whose connections open with its magic;
// it is sure of a match once it has the whole magic, and sure of none at
// the first byte that differs. Its frames are lines. It takes one option,
// "x".
type magicCodec struct{ magic string }

func (c magicCodec) Sniff(prefix []byte) (match, sure bool) {
	n := min(len(prefix), len(c.magic))
	if string(prefix[:n]) != c.magic[:n] {
		return false, true
	}
	return n == len(c.magic), n == len(c.magic)
}

func (magicCodec) Split(buf []byte) (codec.Split, error) {
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		return codec.Split{Len: i + 1}, nil
	}
	return codec.Split{Need: 1}, nil
}

func (magicCodec) Decode(frame []byte) (*codec.Message, error) {
	return &codec.Message{Kind: codec.KindRequest, Raw: frame}, nil
}

func (magicCodec) Encode(dst []byte, m *codec.Message) ([]byte, error) {
	return append(dst, m.Raw...), nil
}

func (magicCodec) Reply(*codec.Message, codec.Status, string) (*codec.Message, error) {
	return nil, nil
}

func newMagic(magic string) func(codec.Options, codec.Peer) (codec.Codec, error) {
	return func(opts codec.Options, _ codec.Peer) (codec.Codec, error) {
		for k := range opts {
			if k != "x" {
				return nil, codec.Errorf(magic, codec.ErrUnsupported, "unknown option %q", k)
			}
		}
		return magicCodec{magic: magic}, nil
	}
}

// plainCodec cannot sniff, and takes no option at all.
type plainCodec struct{}

func (plainCodec) Split(buf []byte) (codec.Split, error)       { return magicCodec{}.Split(buf) }
func (plainCodec) Decode(frame []byte) (*codec.Message, error) { return magicCodec{}.Decode(frame) }
func (plainCodec) Encode(dst []byte, m *codec.Message) ([]byte, error) {
	return magicCodec{}.Encode(dst, m)
}
func (plainCodec) Reply(*codec.Message, codec.Status, string) (*codec.Message, error) {
	return nil, nil
}

func init() {
	// Magics that no other codec of this test binary claims: "toy-auto"
	// (auto_test.go) wants a zero first byte.
	codec.Register(codec.Protocol{Name: "sniff-ab", New: newMagic("AB")})
	codec.Register(codec.Protocol{Name: "sniff-ac", New: newMagic("AC")})
	codec.Register(codec.Protocol{Name: "sniff-long", New: newMagic(strings.Repeat("L", codec.MaxSniff+8))})
	codec.Register(codec.Protocol{Name: "sniff-plain", New: func(opts codec.Options, _ codec.Peer) (codec.Codec, error) {
		if len(opts) > 0 {
			return nil, errors.New("no options")
		}
		return plainCodec{}, nil
	}})
}

func testCandidates(t *testing.T, opts codec.Options) *autoCodec {
	t.Helper()
	cands, err := autoCandidates(opts)
	if err != nil {
		t.Fatal(err)
	}
	lc := &listenerConfig{name: "auto"}
	finishAuto(lc, cands)
	c, err := lc.protocol.New(nil, codec.PeerClient)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*autoCodec)
}

// A connection's first bytes, however they arrive, pick the protocol that
// is sure of them, and its codec splits the very bytes that were sniffed.
func TestAutoCodecPicksTheSureProtocolAndKeepsItsBytes(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"AB hello\nAB again\n", "sniff-ab"},
		{"AC hello\n", "sniff-ac"},
	} {
		a := testCandidates(t, nil)
		var frames []string
		buf := []byte{}
		// One byte at a time: the sniffing waits while no one is sure.
		for i := 0; i < len(tc.in); i++ {
			buf = append(buf, tc.in[i])
			for {
				sp, err := a.Split(buf)
				if err != nil {
					t.Fatalf("%q: Split(%q): %v", tc.in, buf, err)
				}
				if sp.Len == 0 {
					break
				}
				frames = append(frames, string(buf[:sp.Len]))
				buf = buf[sp.Len:]
			}
		}
		if got := strings.Join(frames, ""); got != tc.in {
			t.Errorf("%q: frames %q lost or changed bytes", tc.in, frames)
		}
		p := a.pick.Load()
		if p == nil || p.lc.protocol.Name != tc.want {
			t.Fatalf("%q: picked %+v, want %s", tc.in, p, tc.want)
		}
		if _, ok := p.codec.(magicCodec); !ok {
			t.Errorf("%q: the chosen codec is a %T of its own, want a new magicCodec", tc.in, p.codec)
		}
		if m, err := a.Decode([]byte("AB x\n")); err != nil || string(m.Raw) != "AB x\n" {
			t.Errorf("%q: Decode after the pick = %+v, %v", tc.in, m, err)
		}
	}
}

// Bytes every candidate refuses end reading with no_match at once; bytes
// no candidate is sure of end it with undecided at codec.MaxSniff; until
// then Split asks for more.
func TestAutoCodecRefusesWhatNoProtocolClaims(t *testing.T) {
	a := testCandidates(t, nil)
	for _, in := range []string{"A", "L", strings.Repeat("L", codec.MaxSniff-1)} {
		if sp, err := a.Split([]byte(in)); err != nil || sp.Need != 1 {
			t.Errorf("Split(%q) = %+v, %v; want a need for one more byte", in, sp, err)
		}
	}
	for _, tc := range []struct{ in, reason string }{
		{"GET / HTTP/1.1\r\n", sniffNoMatch},
		{"AX", sniffNoMatch},
		{strings.Repeat("L", codec.MaxSniff), sniffUndecided},
		{strings.Repeat("L", codec.MaxSniff+100), sniffUndecided},
	} {
		_, err := a.Split([]byte(tc.in))
		var se *sniffError
		if !errors.As(err, &se) || se.reason != tc.reason {
			t.Errorf("Split(%.20q...) = %v; want a sniff error, %s", tc.in, err, tc.reason)
			continue
		}
		if len(se.prefix) > codec.MaxSniff {
			t.Errorf("the error keeps %d bytes, more than the %d sniffed", len(se.prefix), codec.MaxSniff)
		}
	}
	if a.pick.Load() != nil {
		t.Error("a refused connection picked a protocol")
	}
	if _, err := a.Encode(nil, &codec.Message{}); !errors.Is(err, codec.ErrUnsupported) {
		t.Errorf("Encode before a pick: %v", err)
	}
}

// Options without a protocol's name go to every candidate, which must all
// take them (the toy-auto codec of auto_test.go takes none: "x" cannot be
// shared here); "<protocol>.<option>" goes to that protocol alone.
// Protocols that cannot sniff are no candidates, whatever the options.
func TestAutoCandidatesOptions(t *testing.T) {
	cands, err := autoCandidates(codec.Options{"sniff-ac.x": "1", "sniff-ab.x": "2"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range cands {
		got[c.lc.protocol.Name] = c.lc.options["x"]
	}
	for name, want := range map[string]string{"sniff-ab": "2", "sniff-ac": "1", "sniff-long": ""} {
		if got[name] != want {
			t.Errorf("%s has x=%q, want %q (all: %v)", name, got[name], want, got)
		}
	}
	if _, ok := got["sniff-plain"]; ok {
		t.Error("a codec that cannot sniff is a candidate")
	}
	for _, tc := range []struct {
		opts codec.Options
		want string
	}{
		{codec.Options{"x": "1"}, `unknown option "x"`},
		{codec.Options{"y": "1"}, `for sniff-ab: codec/AB: unknown option "y"`},
		{codec.Options{"sniff-ab.y": "1"}, `for sniff-ab: codec/AB: unknown option "y"`},
		{codec.Options{"nope.x": "1"}, `nope.*: "nope" is not a protocol this proxy can sniff`},
		{codec.Options{"sniff-plain.x": "1"}, `"sniff-plain" is not a protocol this proxy can sniff`},
	} {
		if _, err := autoCandidates(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("autoCandidates(%v) = %v, want an error with %q", tc.opts, err, tc.want)
		}
	}
}

// The buffer limit of an auto listener holds the largest frame any
// candidate takes.
func TestAutoFrameOptions(t *testing.T) {
	cands := []candidate{
		{lc: &listenerConfig{options: codec.Options{"max_frame_bytes": "100"}}},
		{lc: &listenerConfig{options: codec.Options{"max_frame_bytes": "300"}}},
	}
	if got := autoFrameOptions(cands).MaxFrame(); got != 300 {
		t.Errorf("max frame = %d, want 300", got)
	}
	cands = append(cands, candidate{lc: &listenerConfig{}})
	if got := autoFrameOptions(cands).MaxFrame(); got != 0 {
		t.Errorf("max frame with a codec's default = %d, want 0", got)
	}
}
