package hbone

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// pattern is n bytes that show where a byte went missing.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7 / 5)
	}
	return b
}

// A 10 MiB answer to a caller whose stream window is 1 KiB goes out as
// the caller credits it, never past its windows or its frame size.
func TestLargeAnswerWaitsForTheCallersCredit(t *testing.T) {
	m := newMesh("mesh")
	ts := startServer(t, m, DefaultLimits())
	const window = 1024
	c := dialRaw(t, m, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: window})
	c.connect(1, dest)
	if st, _ := c.status(1); st != http.StatusOK {
		t.Fatalf("CONNECT: %d", st)
	}
	s := ts.next(t)
	answer := pattern(10 << 20)
	wrote := make(chan error, 1)
	go func() {
		_ = s.SetWriteDeadline(time.Now().Add(time.Minute))
		_, err := s.Write(answer)
		s.Close()
		wrote <- err
	}()
	streamWin, connWin := int64(window), int64(initialWindow)
	var got bytes.Buffer
	for ended := false; !ended; {
		switch f := c.next().(type) {
		case *http2.DataFrame:
			n := int64(len(f.Data()))
			if n > streamWin || n > connWin || n > defaultFrameSize {
				t.Fatalf("a DATA frame of %d bytes with windows %d (stream) and %d (connection)", n, streamWin, connWin)
			}
			streamWin -= n
			connWin -= n
			got.Write(f.Data())
			ended = f.StreamEnded()
			if n > 0 && !ended {
				c.must(c.fr.WriteWindowUpdate(1, uint32(n)))
				c.must(c.fr.WriteWindowUpdate(0, uint32(n)))
				streamWin += n
				connWin += n
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset: %v", f.ErrCode)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got.Bytes(), answer) {
		t.Fatalf("the caller got %d bytes, not the %d written", got.Len(), len(answer))
	}
}

// A caller's large request and the proxy's large answer cross on one
// stream of net/http's client: each side's reading credits the other's
// writing.
func TestLargeTransfersBothWays(t *testing.T) {
	ts, cc := connected(t, DefaultLimits())
	tn, _ := open(t, cc, dest)
	s := ts.next(t)
	data := pattern(4 << 20)
	errs := make(chan error, 2)
	go func() {
		_, err := tn.Write(data)
		errs <- err
	}()
	go func() {
		_, err := s.Write(data)
		errs <- err
	}()
	for _, r := range []io.Reader{s, tn} {
		got := make([]byte, len(data))
		if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %v; equal %v", err, bytes.Equal(got, data))
		}
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A caller that sends past a stream's window has that stream reset with
// FLOW_CONTROL_ERROR; one that sends past the connection's loses the
// connection.
func TestSendingPastAWindowIsAFlowControlError(t *testing.T) {
	m := newMesh("mesh")
	lim := DefaultLimits()
	lim.StreamWindow, lim.ConnectionWindow = initialWindow, 2*initialWindow
	ts := startServer(t, m, lim)

	c := dialRaw(t, m, ts.addr)
	if got := c.settings[http2.SettingInitialWindowSize]; got != initialWindow {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE %d, want %d", got, initialWindow)
	}
	c.connect(1, dest)
	if st, _ := c.status(1); st != http.StatusOK {
		t.Fatalf("CONNECT: %d", st)
	}
	s := ts.next(t)
	chunk := make([]byte, defaultFrameSize)
	for range 4 { // 65536 bytes, one past the window
		c.must(c.fr.WriteData(1, false, chunk))
	}
	if code := c.reset(1); code != http2.ErrCodeFlowControl {
		t.Errorf("stream past its window: reset with %v, want FLOW_CONTROL_ERROR", code)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(s); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the reset stream reads %v; want the reset", err)
	}
	// The connection goes on.
	c.connect(3, dest)
	if st, _ := c.status(3); st != http.StatusOK {
		t.Fatalf("CONNECT after the reset: %d", st)
	}

	// Three streams that nobody reads, none past its window, fill the
	// connection's.
	c = dialRaw(t, m, ts.addr)
	for _, id := range []uint32{1, 3, 5} {
		c.connect(id, dest)
		if st, _ := c.status(id); st != http.StatusOK {
			t.Fatalf("CONNECT: %d", st)
		}
	}
	for range 3 {
		for _, id := range []uint32{1, 3, 5} {
			c.must(c.fr.WriteData(id, false, chunk[:defaultFrameSize-1]))
		}
	}
	if code := c.goAway(); code != http2.ErrCodeFlowControl {
		t.Errorf("connection past its window: GOAWAY %v, want FLOW_CONTROL_ERROR", code)
	}
}

// What a stream's reader takes is credited back once half the window is.
func TestReadingCreditsTheCaller(t *testing.T) {
	m := newMesh("mesh")
	ts := startServer(t, m, DefaultLimits())
	c := dialRaw(t, m, ts.addr)
	var connCredit uint32
	for connCredit == 0 { // the server's preface opens the connection's window
		if wu, ok := c.next().(*http2.WindowUpdateFrame); ok && wu.StreamID == 0 {
			connCredit = wu.Increment
		}
	}
	if want := uint32(DefaultLimits().ConnectionWindow - initialWindow); connCredit != want {
		t.Errorf("the connection's window opened by %d, want %d", connCredit, want)
	}
	c.connect(1, dest)
	if st, _ := c.status(1); st != http.StatusOK {
		t.Fatalf("CONNECT: %d", st)
	}
	s := ts.next(t)
	half := int(DefaultLimits().StreamWindow / 2)
	chunk := make([]byte, defaultFrameSize)
	for sent := 0; sent < half; sent += len(chunk) {
		c.must(c.fr.WriteData(1, false, chunk))
	}
	readN(t, s, half)
	for {
		wu, ok := c.next().(*http2.WindowUpdateFrame)
		if ok && wu.StreamID == 1 {
			if wu.Increment != uint32(half) {
				t.Errorf("credit %d, want %d", wu.Increment, half)
			}
			break
		}
	}
}

func TestHeaderBlockInContinuationFrames(t *testing.T) {
	m := newMesh("mesh")
	ts := startServer(t, m, DefaultLimits())
	c := dialRaw(t, m, ts.addr)
	block := c.block(":method", "CONNECT", ":authority", dest, "x-padding", strings.Repeat("p", 3000), "baggage", "k=v")
	c.must(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:10]}))
	c.must(c.fr.WriteContinuation(1, false, block[10:1000]))
	c.must(c.fr.WriteContinuation(1, true, block[1000:]))
	if st, _ := c.status(1); st != http.StatusOK {
		t.Fatalf("CONNECT in three frames: %d", st)
	}
	s := ts.next(t)
	c.must(c.fr.WriteData(1, true, []byte("hi")))
	if got, err := io.ReadAll(s); string(got) != "hi" || err != nil {
		t.Errorf("read %q, %v", got, err)
	}
}

func TestPing(t *testing.T) {
	m := newMesh("mesh")
	lim := DefaultLimits()
	lim.ReadIdleTimeout, lim.PingTimeout = 100*time.Millisecond, 200*time.Millisecond
	ts := startServer(t, m, lim)
	c := dialRaw(t, m, ts.addr)
	data := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	c.must(c.fr.WritePing(false, data))
	for {
		if p, ok := c.next().(*http2.PingFrame); ok && p.IsAck() {
			if p.Data != data {
				t.Errorf("PING ack carries %v, want %v", p.Data, data)
			}
			break
		}
	}
	// A silent caller is pinged; one that answers stays.
	for range 3 {
		for {
			if p, ok := c.next().(*http2.PingFrame); ok && !p.IsAck() {
				c.must(c.fr.WritePing(true, p.Data))
				break
			}
		}
	}
	// One that does not answer is closed.
	start := time.Now()
	c.ended()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("an unanswered PING closed the connection after %v", d)
	}
}

// A malformed frame ends its connection with GOAWAY and the right code;
// the server's other connections go on.
func TestMalformedFrameEndsOnlyItsConnection(t *testing.T) {
	m := newMesh("mesh")
	ts := startServer(t, m, DefaultLimits())
	cc, err := dialH2(t, ts.addr, m.clientTLS(t, callerID, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	tn, _ := open(t, cc, dest)
	s := ts.next(t)
	raw := func(typ http2.FrameType, flags http2.Flags, id uint32, payload []byte) func(*rawClient) {
		return func(c *rawClient) { c.must(c.fr.WriteRawFrame(typ, flags, id, payload)) }
	}
	for _, tc := range []struct {
		name string
		send func(*rawClient)
		want http2.ErrCode
	}{
		{"DATA on stream 0", raw(http2.FrameData, 0, 0, []byte("x")), http2.ErrCodeProtocol},
		{"DATA on a stream never opened", raw(http2.FrameData, 0, 7, []byte("x")), http2.ErrCodeProtocol},
		{"a 3-byte WINDOW_UPDATE", raw(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 1}), http2.ErrCodeFrameSize},
		{"a 5-byte SETTINGS", raw(http2.FrameSettings, 0, 0, []byte{0, 4, 0, 0, 1}), http2.ErrCodeFrameSize},
		{"a frame over SETTINGS_MAX_FRAME_SIZE", raw(http2.FrameData, 0, 1, make([]byte, defaultFrameSize+1)), http2.ErrCodeFrameSize},
		{"CONTINUATION without HEADERS", raw(http2.FrameContinuation, http2.FlagContinuationEndHeaders, 1, []byte{0x82}), http2.ErrCodeProtocol},
		{"PING between HEADERS and CONTINUATION", func(c *rawClient) {
			c.must(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(":method", "CONNECT")}))
			c.must(c.fr.WritePing(false, [8]byte{}))
		}, http2.ErrCodeProtocol},
		{"an HPACK index past the table", raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, []byte{0xff, 0x7f}), http2.ErrCodeCompression},
		{"an even stream ID", func(c *rawClient) { c.connect(2, dest) }, http2.ErrCodeProtocol},
		{"PUSH_PROMISE", raw(http2.FramePushPromise, http2.FlagPushPromiseEndHeaders, 1, []byte{0, 0, 0, 2, 0x82}), http2.ErrCodeProtocol},
		{"a zero WINDOW_UPDATE on the connection", raw(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 0, 0}), http2.ErrCodeProtocol},
		{"a WINDOW_UPDATE past 2^31-1", raw(http2.FrameWindowUpdate, 0, 0, []byte{0x7f, 0xff, 0xff, 0xff}), http2.ErrCodeFlowControl},
		{"no SETTINGS after the preface", nil, http2.ErrCodeProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c *rawClient
			if tc.send == nil {
				nc := dialTLS(t, m, ts.addr)
				_, _ = io.WriteString(nc, http2.ClientPreface)
				c = &rawClient{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
				c.must(c.fr.WritePing(false, [8]byte{}))
			} else {
				c = dialRaw(t, m, ts.addr)
				tc.send(c)
			}
			if code := c.goAway(); code != tc.want {
				t.Errorf("GOAWAY %v, want %v", code, tc.want)
			}
			// The other connection's stream and the connection go on.
			if _, err := tn.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if got := readN(t, s, 4); got != "ping" {
				t.Errorf("the other connection's stream read %q", got)
			}
			if _, err := s.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if got := readN(t, tn, 4); got != "pong" {
				t.Errorf("the other connection's caller read %q", got)
			}
		})
	}
	if _, status := open(t, cc, dest); status != http.StatusOK {
		t.Errorf("a new stream on the other connection: %d", status)
	}
}

func TestHeaderBlockOverTheLimitIsRefused(t *testing.T) {
	m := newMesh("mesh")
	ts := startServer(t, m, DefaultLimits())
	c := dialRaw(t, m, ts.addr)
	if got := c.settings[http2.SettingMaxHeaderListSize]; got != uint32(DefaultLimits().MaxHeaderBytes) {
		t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE %d", got)
	}
	// One small frame: a field entered in the HPACK table, then named by
	// its index again and again.
	big := strings.Repeat("b", 3000)
	fields := []string{":method", "CONNECT", ":authority", dest}
	for range 8 {
		fields = append(fields, "x-big", big)
	}
	block := c.block(fields...)
	if len(block) > 4000 {
		t.Fatalf("the block is %d bytes; it was to name the table entry", len(block))
	}
	c.must(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true}))
	if st, _ := c.status(1); st != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 24 KiB header list in one frame: %d, want 431", st)
	}
	// Literal fields, over HEADERS and CONTINUATION.
	block = c.block(":method", "CONNECT", ":authority", dest, "x-a", strings.Repeat("^", 9000), "x-b", strings.Repeat("^", 9000))
	c.must(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:defaultFrameSize]}))
	c.must(c.fr.WriteContinuation(3, true, block[defaultFrameSize:]))
	if st, _ := c.status(3); st != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("an 18 KiB header list over two frames: %d, want 431", st)
	}
	// The connection, and its HPACK state, go on.
	c.connect(5, dest)
	if st, _ := c.status(5); st != http.StatusOK {
		t.Errorf("CONNECT after the refusals: %d", st)
	}
	if len(ts.requests) != 1 {
		t.Errorf("%d requests reached Open, want 1", len(ts.requests))
	}
}

// Requests that break RFC 9113's rules for CONNECT (8.5) or any request
// (8.2.2, 8.3) are reset with PROTOCOL_ERROR; another method is answered
// 405. The connection goes on.
func TestMalformedRequestsAreReset(t *testing.T) {
	m := newMesh("mesh")
	ts := startServer(t, m, DefaultLimits())
	c := dialRaw(t, m, ts.addr)
	id := uint32(1)
	for _, tc := range []struct {
		name   string
		fields []string
		status int // -1: reset with PROTOCOL_ERROR
	}{
		{"CONNECT with :scheme and :path", []string{":method", "CONNECT", ":scheme", "https", ":path", "/", ":authority", dest}, -1},
		{"CONNECT without :authority", []string{":method", "CONNECT"}, -1},
		{"extended CONNECT", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":path", "/", ":authority", dest}, -1},
		{"no :method", []string{":authority", dest}, -1},
		{"a response's :status", []string{":status", "200"}, -1},
		{"a connection-specific field", []string{":method", "CONNECT", ":authority", dest, "connection", "keep-alive"}, -1},
		{"te other than trailers", []string{":method", "CONNECT", ":authority", dest, "te", "gzip"}, -1},
		{"GET without :path", []string{":method", "GET", ":scheme", "https", ":authority", dest}, -1},
		{"GET", []string{":method", "GET", ":scheme", "https", ":path", "/", ":authority", dest}, http.StatusMethodNotAllowed},
		{"CONNECT", []string{":method", "CONNECT", ":authority", dest, "te", "trailers"}, http.StatusOK},
	} {
		c.headers(id, false, tc.fields...)
		st, code := c.status(id)
		if st != tc.status || st == -1 && code != http2.ErrCodeProtocol {
			t.Errorf("%s: status %d, reset %v; want %d", tc.name, st, code, tc.status)
		}
		id += 2
	}
}

func TestMaxConcurrentStreams(t *testing.T) {
	m := newMesh("mesh")
	lim := DefaultLimits()
	lim.MaxConcurrentStreams = 2
	ts := startServer(t, m, lim)
	c := dialRaw(t, m, ts.addr)
	if got := c.settings[http2.SettingMaxConcurrentStreams]; got != 2 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d", got)
	}
	var served []*Stream
	accept := func(id uint32) {
		t.Helper()
		c.connect(id, dest)
		if st, code := c.status(id); st != http.StatusOK {
			t.Fatalf("stream %d: %d, %v", id, st, code)
		}
		served = append(served, ts.next(t))
	}
	refused := func(id uint32) {
		t.Helper()
		c.connect(id, dest)
		if st, code := c.status(id); st != -1 || code != http2.ErrCodeRefusedStream {
			t.Errorf("stream %d: %d, %v; want REFUSED_STREAM", id, st, code)
		}
	}
	accept(1)
	accept(3)
	refused(5)
	c.must(c.fr.WriteRSTStream(1, http2.ErrCodeCancel))
	accept(7)
	// Streams the caller reset count until the proxy closes them, up to
	// twice the maximum.
	for _, id := range []uint32{3, 7} {
		c.must(c.fr.WriteRSTStream(id, http2.ErrCodeCancel))
	}
	accept(9)
	c.must(c.fr.WriteRSTStream(9, http2.ErrCodeCancel))
	refused(11)
	for _, s := range served {
		s.Close()
	}
	accept(13)
}

func TestIdleConnectionGoesAway(t *testing.T) {
	m := newMesh("mesh")
	lim := DefaultLimits()
	lim.IdleTimeout = 200 * time.Millisecond
	ts := startServer(t, m, lim)
	c := dialRaw(t, m, ts.addr)
	c.connect(1, dest)
	if st, _ := c.status(1); st != http.StatusOK {
		t.Fatalf("CONNECT: %d", st)
	}
	s := ts.next(t)
	time.Sleep(2 * lim.IdleTimeout)
	s.Close() // the connection has a stream until now
	start := time.Now()
	if code := c.goAway(); code != http2.ErrCodeNo {
		t.Errorf("GOAWAY %v", code)
	}
	if d := time.Since(start); d < lim.IdleTimeout/2 || d > 5*lim.IdleTimeout {
		t.Errorf("an idle connection went away after %v, want about %v", d, lim.IdleTimeout)
	}
	eventually(t, 5*time.Second, "the connection uncounted", func() bool { return ts.activeConns() == 0 })
}

// The caller's SETTINGS_INITIAL_WINDOW_SIZE applies to the streams open
// when it changes (RFC 9113 6.9.2); one that overflows a window ends the
// connection.
func TestInitialWindowChangesOpenStreams(t *testing.T) {
	m := newMesh("mesh")
	ts := startServer(t, m, DefaultLimits())
	c := dialRaw(t, m, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	c.connect(1, dest)
	if st, _ := c.status(1); st != http.StatusOK {
		t.Fatalf("CONNECT: %d", st)
	}
	s := ts.next(t)
	go func() { _, _ = s.Write([]byte("hello world")) }()
	data := func() string {
		t.Helper()
		for {
			if d, ok := c.next().(*http2.DataFrame); ok {
				return string(d.Data())
			}
		}
	}
	if f, err := c.read(100 * time.Millisecond); err == nil {
		t.Fatalf("with a window of 0 the server sent %v", f)
	}
	c.must(c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 5}))
	if got := data(); got != "hello" {
		t.Errorf("with a window of 5: %q", got)
	}
	c.must(c.fr.WriteWindowUpdate(1, 100))
	if got := data(); got != " world" {
		t.Errorf("after a WINDOW_UPDATE: %q", got)
	}
	// The stream's window is 94; raising the initial window by 2^31-6
	// overflows it.
	c.must(c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow}))
	if code := c.goAway(); code != http2.ErrCodeFlowControl {
		t.Errorf("GOAWAY %v, want FLOW_CONTROL_ERROR", code)
	}
}

// A CONNECT stream carries no header block after its request (RFC 9113
// 8.5): trailers reset it.
func TestTrailersResetAConnectStream(t *testing.T) {
	m := newMesh("mesh")
	ts := startServer(t, m, DefaultLimits())
	c := dialRaw(t, m, ts.addr)
	c.connect(1, dest)
	if st, _ := c.status(1); st != http.StatusOK {
		t.Fatalf("CONNECT: %d", st)
	}
	s := ts.next(t)
	c.headers(1, true, "x-trailer", "v")
	if code := c.reset(1); code != http2.ErrCodeProtocol {
		t.Errorf("trailers: reset with %v, want PROTOCOL_ERROR", code)
	}
	if _, err := s.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Errorf("the reset stream reads %v", err)
	}
}
