package thrift

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/protocols/thrift/internal/echo"
)

func comboNamed(t testing.TB, name string) combo {
	t.Helper()
	for _, c := range combos {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no combo %s", name)
	return combo{}
}

func newCodec(t testing.TB, opts codec.Options) *Codec {
	t.Helper()
	c, err := New(opts, codec.PeerClient)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Codec)
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		opts    codec.Options
		wantErr string // a substring; "" for success
	}{
		{codec.Options{}, ""},
		{codec.Options{"transport": "auto", "protocol": "auto"}, ""},
		{codec.Options{"transport": "framed", "protocol": "binary"}, ""},
		{codec.Options{"transport": "unframed", "protocol": "compact"}, ""},
		{codec.Options{"transport": "header", "max_frame_bytes": "1048576"}, ""},
		{codec.Options{"transport": "buffered"}, "option transport="},
		{codec.Options{"protocol": "json"}, "option protocol="},
		{codec.Options{"max_frame_bytes": "12"}, "option max_frame_bytes="},
		{codec.Options{"max_frame_bytes": "lots"}, "option max_frame_bytes="},
		{codec.Options{"strict": "true"}, `unknown option "strict"`},
	} {
		_, err := New(tc.opts, codec.PeerClient)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("New(%v): %v", tc.opts, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, codec.ErrUnsupported)):
			t.Errorf("New(%v) = %v, want an ErrUnsupported naming %s", tc.opts, err, tc.wantErr)
		case err != nil && !strings.HasPrefix(err.Error(), "codec/thrift: "):
			t.Errorf("New(%v): %v lacks the codec/thrift prefix", tc.opts, err)
		}
	}
}

// TestDecodeCaptures splits each combination's captures from one stream per
// direction, as one connection's codec sees them, and checks what Decode finds.
func TestDecodeCaptures(t *testing.T) {
	for _, c := range combos {
		t.Run(c.name, func(t *testing.T) {
			reqs, resps := specs(c)
			for _, list := range [][]capture{reqs, resps} {
				var stream []byte
				for _, s := range list {
					stream = append(stream, readCapture(t, c, s.name)...)
				}
				cd := newCodec(t, nil)
				for _, s := range list {
					sp, err := cd.Split(stream)
					if err != nil || sp.Len == 0 {
						t.Fatalf("%s: Split = %+v, %v", s.name, sp, err)
					}
					m, err := cd.Decode(stream[:sp.Len])
					if err != nil {
						t.Fatalf("%s: Decode: %v", s.name, err)
					}
					stream = stream[sp.Len:]
					if m.Kind != s.kind || m.ID != s.id || m.Status != s.status {
						t.Errorf("%s: kind %v id %d status %v, want %v %d %v", s.name, m.Kind, m.ID, m.Status, s.kind, s.id, s.status)
					}
					want := map[string]string{keyMethod: s.method}
					if s.service != "" {
						want[keyService] = s.service
					}
					maps.Copy(want, s.headers)
					got := map[string]string{}
					m.Attrs.Range(func(k, v string) bool { got[k] = v; return true })
					if !maps.Equal(got, want) {
						t.Errorf("%s: attributes %v, want %v", s.name, got, want)
					}
					if v, ok := m.Get(keyService); ok != (s.service != "") || v != s.service {
						t.Errorf("%s: Get(service) = %q, %v", s.name, v, ok)
					}
				}
				if len(stream) != 0 {
					t.Fatalf("%d bytes left", len(stream))
				}
			}
		})
	}
}

func TestDetect(t *testing.T) {
	be := func(n uint32, rest ...byte) []byte { return append(binary.BigEndian.AppendUint32(nil, n), rest...) }
	for _, tc := range []struct {
		name  string
		opts  codec.Options
		in    []byte
		class class
		need  int
		err   error
	}{
		{"empty", nil, nil, classUnknown, 4, nil},
		{"strict unframed", nil, []byte{0x80, 0x01, 0x00, 0x01}, classUnframed, 0, nil},
		{"compact unframed", nil, []byte{0x82, 0x21, 0x01, 0x04}, classUnframed, 0, nil},
		{"framed needs six", nil, be(20), classUnknown, 2, nil},
		{"strict framed", nil, be(20, 0x80, 0x01), classLengthPrefixed, 0, nil},
		{"compact framed", nil, be(20, 0x82, 0x21), classLengthPrefixed, 0, nil},
		{"theader", nil, be(20, 0x0f, 0xff), classLengthPrefixed, 0, nil},
		{"old framed needs the type", nil, be(20, 0, 0, 0, 4, 'p', 'i'), classUnknown, 3, nil},
		{"old framed", nil, be(20, 0, 0, 0, 4, 'p', 'i', 'n', 'g', 1), classLengthPrefixed, 0, nil},
		{"old framed, bad type", nil, be(20, 0, 0, 0, 4, 'p', 'i', 'n', 'g', 9), classUnknown, 0, codec.ErrMalformed},
		{"old framed, name past the frame", nil, be(12, 0, 0, 0, 4), classUnknown, 0, codec.ErrMalformed},
		{"old framed, over the limit", nil, be(DefaultMaxFrame+1, 0, 0, 0, 4), classUnknown, 0, codec.ErrTooLarge},
		{"old unframed", nil, be(4, 'p', 'i', 'n', 'g', 1), classUnframed, 0, nil},
		{"old unframed needs the type", nil, be(4, 'p', 'i', 'n'), classUnknown, 2, nil},
		{"old unframed, empty name", nil, be(0, 4, 0), classUnframed, 0, nil},
		{"old unframed, bad type", nil, be(2, 'h', 'i', 0), classUnknown, 0, codec.ErrMalformed},
		{"old unframed, huge name", nil, be(1<<30, 'h', 'i'), classUnknown, 0, codec.ErrTooLarge},
		{"negative name", nil, []byte{0xff, 0xff, 0xff, 0xfe, 'h', 'i'}, classUnknown, 0, codec.ErrMalformed},
		{"http is not thrift", nil, []byte("GET / HTTP/1.1"), classUnknown, 0, codec.ErrTooLarge},
		{"compact only refuses old binary", codec.Options{"protocol": "compact"}, be(4, 'p', 'i', 'n', 'g', 1), classUnknown, 0, codec.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, need, err := newCodec(t, tc.opts).detect(tc.in)
			if cl != tc.class || need != tc.need || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("detect(% x) = %v, %d, %v; want %v, %d, %v", tc.in, cl, need, err, tc.class, tc.need, tc.err)
			}
		})
	}
}

// libMessage has the library write one message (or frame) of c whose struct
// body is written by body.
func libMessage(t testing.TB, c combo, typ thrift.TMessageType, body func(ctx context.Context, p thrift.TProtocol) error) []byte {
	t.Helper()
	buf := thrift.NewTMemoryBuffer()
	p := c.libProtocol(buf)
	ctx := context.Background()
	if err := p.WriteMessageBegin(ctx, "test", typ, 9); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteStructBegin(ctx, "args"); err != nil {
		t.Fatal(err)
	}
	if err := body(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteFieldStop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteStructEnd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteMessageEnd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// nest writes depth structs, one inside the other.
func nest(depth int) func(ctx context.Context, p thrift.TProtocol) error {
	return func(ctx context.Context, p thrift.TProtocol) error {
		for i := 0; i < depth; i++ {
			if err := p.WriteFieldBegin(ctx, "s", thrift.STRUCT, 1); err != nil {
				return err
			}
			if err := p.WriteStructBegin(ctx, "s"); err != nil {
				return err
			}
		}
		for i := 0; i < depth; i++ {
			if err := p.WriteFieldStop(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// stringList writes field 1: list<string> of n one-byte strings.
func stringList(n int) func(ctx context.Context, p thrift.TProtocol) error {
	return func(ctx context.Context, p thrift.TProtocol) error {
		if err := p.WriteFieldBegin(ctx, "l", thrift.LIST, 1); err != nil {
			return err
		}
		if err := p.WriteListBegin(ctx, thrift.STRING, n); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := p.WriteString(ctx, "a"); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestUnframedLimits: an unframed message is found only by walking it, so
// nesting, counts and lengths are capped, with errors instead of allocations.
func TestUnframedLimits(t *testing.T) {
	for _, name := range []string{"binary_unframed", "compact_unframed", "oldbinary_unframed"} {
		c := comboNamed(t, name)
		t.Run(name, func(t *testing.T) {
			ok := libMessage(t, c, thrift.CALL, nest(maxDepth-1))
			if sp, err := newCodec(t, nil).Split(ok); err != nil || sp.Len != len(ok) {
				t.Fatalf("%d nested structs: Split = %+v, %v", maxDepth-1, sp, err)
			}
			deep := libMessage(t, c, thrift.CALL, nest(maxDepth))
			if _, err := newCodec(t, nil).Split(deep); !errors.Is(err, codec.ErrTooLarge) {
				t.Fatalf("%d nested structs: Split error %v, want ErrTooLarge", maxDepth, err)
			}
			if _, err := newCodec(t, nil).Decode(deep); !errors.Is(err, codec.ErrTooLarge) {
				t.Fatalf("%d nested structs: Decode error %v, want ErrTooLarge", maxDepth, err)
			}

			// A list of 1000 strings cut after its first element asks for
			// at least the rest of the list at once.
			long := libMessage(t, c, thrift.CALL, stringList(1000))
			head := len(libMessage(t, c, thrift.CALL, stringList(1))) - 1
			sp, err := newCodec(t, nil).Split(long[:head])
			minString := 4
			if c.protocol == "compact" {
				minString = 1
			}
			if err != nil || sp.Need < 999*minString+1 || head+sp.Need > len(long) {
				t.Fatalf("Split of a cut list = %+v, %v; want Need from %d to %d", sp, err, 999*minString+1, len(long)-head)
			}

			// Over a small limit, the same list is refused before it is all read.
			small := newCodec(t, codec.Options{"max_frame_bytes": "512"})
			if _, err := small.Split(long[:head]); !errors.Is(err, codec.ErrTooLarge) {
				t.Fatalf("a list past max_frame_bytes: %v, want ErrTooLarge", err)
			}
		})
	}
}

// TestUnframedBadInput: hand-made messages whose counts, lengths or types are
// impossible give errors of the right kind.
func TestUnframedBadInput(t *testing.T) {
	strict := func(body ...byte) []byte {
		return append([]byte{0x80, 0x01, 0x00, 0x01, 0, 0, 0, 1, 'm', 0, 0, 0, 1}, body...)
	}
	compact := func(body ...byte) []byte { return append([]byte{0x82, 0x21, 0x01, 0x01, 'm'}, body...) }
	for _, tc := range []struct {
		name string
		in   []byte
		err  error
	}{
		{"negative string length", strict(bString, 0, 1, 0xff, 0xff, 0xff, 0xff), codec.ErrMalformed},
		{"string past the limit", strict(bString, 0, 1, 0x7f, 0xff, 0xff, 0xff), codec.ErrTooLarge},
		{"unknown field type", strict(99, 0, 1), codec.ErrMalformed},
		{"negative list count", strict(bList, 0, 1, bI32, 0xff, 0xff, 0xff, 0xff), codec.ErrMalformed},
		{"list count past the limit", strict(bList, 0, 1, bStruct, 0x7f, 0xff, 0xff, 0xff), codec.ErrTooLarge},
		{"map count past the limit", strict(bMap, 0, 1, bI64, bI64, 0x01, 0, 0, 0), codec.ErrTooLarge},
		{"list of an unknown type", strict(bList, 0, 1, 77, 0, 0, 0, 1), codec.ErrMalformed},
		{"bad message type", []byte{0x80, 0x01, 0x00, 0x07, 0, 0, 0, 0, 0, 0, 0, 1, 0}, codec.ErrMalformed},
		{"compact varint of 6 bytes", compact(0x15, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01), codec.ErrMalformed},
		{"compact string past the limit", compact(0x18, 0xff, 0xff, 0xff, 0xff, 0x07), codec.ErrTooLarge},
		{"compact list count past the limit", compact(0x19, 0xfc, 0xff, 0xff, 0xff, 0x07), codec.ErrTooLarge},
		{"compact map of an unknown type", compact(0x1b, 0x01, 0xee), codec.ErrMalformed},
		{"compact seqid over 32 bits", []byte{0x82, 0x21, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x00}, codec.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newCodec(t, nil).Split(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Split(% x) = %v, want %v", tc.in, err, tc.err)
			}
			if _, err := newCodec(t, nil).Decode(tc.in); err == nil {
				t.Fatalf("Decode(% x) succeeded", tc.in)
			}
		})
	}
}

// TestCompactVersion: a compact message of another version is refused once
// the transport is known (auto detection does not take it for compact).
func TestCompactVersion(t *testing.T) {
	in := []byte{0x82, 0x22, 0x01, 0x01, 'm', 0x00}
	if _, err := newCodec(t, codec.Options{"transport": "unframed"}).Split(in); !errors.Is(err, codec.ErrMalformed) {
		t.Fatalf("Split = %v, want ErrMalformed", err)
	}
}

// TestOnewayMethods: Go's client sends oneway calls as CALL; the
// oneway_methods option makes them oneway requests, by bare or full name.
func TestOnewayMethods(t *testing.T) {
	for _, c := range combos {
		for _, opt := range []string{"fire", " ping , fire"} {
			m, err := newCodec(t, codec.Options{"oneway_methods": opt}).Decode(readCapture(t, c, "fire_call"))
			if err != nil || m.Kind != codec.KindOneway {
				t.Fatalf("%s with oneway_methods=%q: %v, %v", c.name, opt, m, err)
			}
		}
		m, err := newCodec(t, codec.Options{"oneway_methods": "Other:ping"}).Decode(readCapture(t, c, "mux_ping_request"))
		if err != nil || m.Kind != codec.KindRequest {
			t.Fatalf("%s: a method of another service: %v, %v", c.name, m, err)
		}
		m, err = newCodec(t, codec.Options{"oneway_methods": "ping"}).Decode(readCapture(t, c, "mux_ping_request"))
		if err != nil || m.Kind != codec.KindOneway {
			t.Fatalf("%s: a multiplexed name by its bare method: %v, %v", c.name, m, err)
		}
	}
}

// TestOptionsPin: a pinned transport or protocol refuses frames of another.
func TestOptionsPin(t *testing.T) {
	for _, tc := range []struct {
		opts    codec.Options
		capture string
		err     error
	}{
		{codec.Options{"transport": "framed"}, "binary_header", codec.ErrUnsupported},
		{codec.Options{"transport": "header"}, "binary_framed", codec.ErrMalformed},
		{codec.Options{"protocol": "compact"}, "binary_framed", codec.ErrMalformed},
		{codec.Options{"protocol": "binary"}, "compact_header", codec.ErrMalformed},
		{codec.Options{"protocol": "binary"}, "compact_unframed", codec.ErrMalformed},
	} {
		frame := readCapture(t, comboNamed(t, tc.capture), "ping_request")
		if _, err := newCodec(t, tc.opts).Decode(frame); !errors.Is(err, tc.err) {
			t.Errorf("%v on %s: %v, want %v", tc.opts, tc.capture, err, tc.err)
		}
	}
	// Auto: a length-prefixed connection takes framed and THeader frames of
	// either protocol, frame by frame, as Go's THeaderTransport does.
	c := newCodec(t, nil)
	for _, name := range []string{"binary_framed", "compact_header", "compact_framed", "binary_header", "oldbinary_framed"} {
		if _, err := c.Decode(readCapture(t, comboNamed(t, name), "ping_request")); err != nil {
			t.Errorf("%s after the others: %v", name, err)
		}
	}
}

// libRead reads a request frame of c with the library as a server does: the
// message header, the ping arguments, and THeader's info headers.
func libRead(t *testing.T, c combo, frame []byte) (name string, seq int32, msg string, headers thrift.THeaderMap) {
	t.Helper()
	buf := thrift.NewTMemoryBuffer()
	buf.Write(frame)
	p := c.libProtocol(buf)
	ctx := context.Background()
	name, _, seq, err := p.ReadMessageBegin(ctx)
	if err != nil {
		t.Fatalf("library ReadMessageBegin: %v", err)
	}
	args := echo.NewEchoPingArgs()
	if err := args.Read(ctx, p); err != nil {
		t.Fatalf("library reads the arguments: %v", err)
	}
	if err := p.ReadMessageEnd(ctx); err != nil {
		t.Fatal(err)
	}
	if hp, ok := p.(*thrift.THeaderProtocol); ok {
		headers = hp.GetReadHeaders()
	}
	return name, seq, args.Msg, headers
}

// TestEncodeID: a new seqid reaches the library, also where a compact varint
// changes length and the frame length must follow; THeader's own sequence
// number follows too.
func TestEncodeID(t *testing.T) {
	for _, c := range combos {
		t.Run(c.name, func(t *testing.T) {
			for _, id := range []uint64{1, 127, 128, 300, 1<<31 - 1, 1<<32 - 1} {
				cd := newCodec(t, nil)
				m, err := cd.Decode(readCapture(t, c, "ping_request"))
				if err != nil {
					t.Fatal(err)
				}
				m.ID = id
				out, err := cd.Encode(nil, m)
				if err != nil {
					t.Fatal(err)
				}
				if sp, err := newCodec(t, nil).Split(out); err != nil || sp.Len != len(out) {
					t.Fatalf("id %d: Split of the encoded frame = %+v, %v", id, sp, err)
				}
				name, seq, msg, headers := libRead(t, c, out)
				if name != "ping" || uint32(seq) != uint32(id) || msg != "hello" {
					t.Fatalf("id %d: the library read %q seqid %d msg %q", id, name, seq, msg)
				}
				if c.transport == "header" {
					if !maps.Equal(headers, requestHeaders) {
						t.Fatalf("id %d: headers %v", id, headers)
					}
					if got := binary.BigEndian.Uint32(out[8:]); uint64(got) != id {
						t.Fatalf("id %d: THeader sequence number %d", id, got)
					}
				}
			}
			m, _ := newCodec(t, nil).Decode(readCapture(t, c, "ping_request"))
			m.ID = 1 << 32
			if _, err := newCodec(t, nil).Encode(nil, m); !errors.Is(err, codec.ErrUnsupported) {
				t.Fatalf("an id over 32 bits: %v, want ErrUnsupported", err)
			}
		})
	}
}

// TestMutations: THeader requests get the mutations as info headers, which
// the library reads; other transports refuse them.
func TestMutations(t *testing.T) {
	for _, c := range combos {
		t.Run(c.name, func(t *testing.T) {
			cd := newCodec(t, nil)
			m, err := cd.Decode(readCapture(t, c, "ping_request"))
			if err != nil {
				t.Fatal(err)
			}
			m.Set("x-user", "bob")
			m.Set("x-route", "canary")
			m.ID = 1000
			out, err := cd.Encode(nil, m)
			if c.transport != "header" {
				if !errors.Is(err, codec.ErrUnsupported) || !strings.Contains(err.Error(), "THeader") {
					t.Fatalf("a mutation over %s: %v, want ErrUnsupported naming THeader", c.transport, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			name, seq, msg, headers := libRead(t, c, out)
			want := thrift.THeaderMap{"x-trace": "t-1", "x-user": "bob", "x-route": "canary"}
			if name != "ping" || seq != 1000 || msg != "hello" || !maps.Equal(headers, want) {
				t.Fatalf("the library read %q %d %q %v; want ping 1000 hello %v", name, seq, msg, headers, want)
			}
			m.Mutations = nil
			m.Set(keyMethod, "other")
			if _, err := cd.Encode(nil, m); !errors.Is(err, codec.ErrUnsupported) {
				t.Fatalf("mutating the method: %v, want ErrUnsupported", err)
			}
		})
	}
}

// TestHeaderUnknownInfo: an info section Rosetta does not read is kept as it
// is when headers are rewritten; the library still reads the key/values.
func TestHeaderUnknownInfo(t *testing.T) {
	payload := readCapture(t, comboNamed(t, "binary_framed"), "ping_request")[4:]
	block := []byte{headerBinary, 0, infoKeyValue, 1, 1, 'k', 1, 'v', 7, 0xaa, 0xbb}
	for len(block)%4 != 0 {
		block = append(block, 0)
	}
	frame := []byte{0, 0, 0, 0, headerMagic0, headerMagic1, 0, 0, 0, 0, 0, 1, 0, byte(len(block) / 4)}
	frame = append(append(frame, block...), payload...)
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))

	c := comboNamed(t, "binary_header")
	cd := newCodec(t, nil)
	m, err := cd.Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Get("k"); v != "v" {
		t.Fatalf("header k = %q", v)
	}
	m.Set("x", "y")
	out, err := cd.Encode(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte{7, 0xaa, 0xbb}) {
		t.Fatalf("the unknown info section is lost: % x", out)
	}
	if _, _, msg, headers := libRead(t, c, out); msg != "hello" || !maps.Equal(headers, thrift.THeaderMap{"k": "v", "x": "y"}) {
		t.Fatalf("the library read %q %v", msg, headers)
	}
	// Transforms (zlib) are refused, not misread.
	zlib := append([]byte(nil), frame...)
	zlib[15] = 1
	if _, err := newCodec(t, nil).Decode(zlib); !errors.Is(err, codec.ErrUnsupported) {
		t.Fatalf("a zlib transform: %v, want ErrUnsupported", err)
	}
}

func TestReply(t *testing.T) {
	c := comboNamed(t, "compact_header")
	cd := newCodec(t, nil)
	fire, err := cd.Decode(readCapture(t, c, "fire_oneway"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := cd.Reply(fire, codec.StatusNoRoute, "x"); m != nil || err != nil {
		t.Fatalf("Reply to a oneway call = %v, %v; want nil, nil", m, err)
	}
	resp, err := cd.Decode(readCapture(t, c, "ping_reply"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cd.Reply(resp, codec.StatusNoRoute, "x"); !errors.Is(err, codec.ErrUnsupported) {
		t.Fatalf("Reply to a response: %v", err)
	}
	for _, tc := range []struct {
		status codec.Status
		typ    int32
	}{
		{codec.StatusNoRoute, thrift.UNKNOWN_METHOD},
		{codec.StatusBadRequest, thrift.PROTOCOL_ERROR},
		{codec.StatusUnauthorized, thrift.UNKNOWN_APPLICATION_EXCEPTION},
		{codec.StatusTimeout, thrift.INTERNAL_ERROR},
		{codec.StatusNoUpstream, thrift.INTERNAL_ERROR},
		{codec.StatusOverloaded, thrift.INTERNAL_ERROR},
		{codec.StatusRateLimited, thrift.INTERNAL_ERROR},
		{codec.StatusUpstreamReset, thrift.INTERNAL_ERROR},
		{codec.StatusFault, thrift.INTERNAL_ERROR},
		{codec.StatusError, thrift.INTERNAL_ERROR},
	} {
		if got, ok := replyType(tc.status); !ok || got != tc.typ {
			t.Errorf("replyType(%v) = %d, %v; want %d", tc.status, got, ok, tc.typ)
		}
	}
	// A multiplexed request is answered with the bare method name and no
	// detail gets a default message.
	mux, err := cd.Decode(readCapture(t, c, "mux_ping_request"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := cd.Reply(mux, codec.StatusTimeout, "")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := rep.Get(keyMethod); v != "ping" || rep.Status != codec.StatusTimeout || rep.ID != mux.ID {
		t.Fatalf("reply method %q status %v id %d", v, rep.Status, rep.ID)
	}
	if _, ok := rep.Get(keyService); ok {
		t.Fatal("the reply keeps the service prefix")
	}
	if !bytes.Contains(rep.Raw, []byte("rosetta: timeout")) {
		t.Fatalf("no default detail in % x", rep.Raw)
	}
}

func TestSniff(t *testing.T) {
	cd := newCodec(t, nil)
	for _, tc := range []struct {
		in          []byte
		match, sure bool
	}{
		{nil, false, false},
		{[]byte{0x80, 0x01}, true, true},
		{[]byte{0x82, 0x21}, true, true},
		{[]byte{0, 0, 0, 20}, false, false},
		{[]byte{0, 0, 0, 20, 0x80, 0x01}, true, true},
		{[]byte{0, 0, 0, 20, 0x0f, 0xff}, true, true},
		{[]byte{0, 0, 0, 20, 0x82, 0x21}, true, true},
		{[]byte{0xda, 0xbb, 0xc2, 0, 0, 0}, false, true},
		{[]byte("GET / HTTP/1.1"), false, true},
	} {
		if m, s := cd.Sniff(tc.in); m != tc.match || s != tc.sure {
			t.Errorf("Sniff(% x) = %v, %v; want %v, %v", tc.in, m, s, tc.match, tc.sure)
		}
	}
}
