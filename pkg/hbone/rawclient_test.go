package hbone

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawClient is an HTTP/2 client made of golang.org/x/net/http2's Framer,
// for what net/http's client will not send: small windows, split header
// blocks, malformed frames.
type rawClient struct {
	t    *testing.T
	nc   net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
	// settings is the server's SETTINGS, by ID.
	settings map[http2.SettingID]uint32
}

// dialRaw connects to the server with the caller's certificate, sends the
// preface and settings, and reads the server's SETTINGS.
func dialRaw(t *testing.T, m *mesh, addr string, settings ...http2.Setting) *rawClient {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, m.clientTLS(t, callerID, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	return newRawClient(t, tc, settings...)
}

func newRawClient(t *testing.T, nc net.Conn, settings ...http2.Setting) *rawClient {
	t.Helper()
	t.Cleanup(func() { nc.Close() })
	c := &rawClient{t: t, nc: nc, fr: http2.NewFramer(nc, nc), settings: map[http2.SettingID]uint32{}}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c.must(c.fr.WriteSettings(settings...))
	f := c.next()
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("the server began with %v, not SETTINGS", f)
	}
	_ = sf.ForeachSetting(func(s http2.Setting) error {
		c.settings[s.ID] = s.Val
		return nil
	})
	c.must(c.fr.WriteSettingsAck())
	return c
}

func (c *rawClient) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

// next reads the next frame, within 5 s.
func (c *rawClient) next() http2.Frame {
	c.t.Helper()
	f, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

func (c *rawClient) read(wait time.Duration) (http2.Frame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(wait))
	return c.fr.ReadFrame()
}

// block encodes a header block of name, value pairs.
func (c *rawClient) block(fields ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.must(c.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}))
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// headers sends a header block in one HEADERS frame.
func (c *rawClient) headers(id uint32, end bool, fields ...string) {
	c.t.Helper()
	c.must(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(fields...), EndHeaders: true, EndStream: end}))
}

// connect sends a CONNECT to authority on stream id.
func (c *rawClient) connect(id uint32, authority string) {
	c.t.Helper()
	c.headers(id, false, ":method", "CONNECT", ":authority", authority)
}

// status reads frames until the answer on stream id: its :status, or -1
// and the code of an RST_STREAM.
func (c *rawClient) status(id uint32) (int, http2.ErrCode) {
	c.t.Helper()
	for {
		switch f := c.next().(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				st, err := strconv.Atoi(f.PseudoValue("status"))
				if err != nil {
					c.t.Fatalf("stream %d: :status %q", id, f.PseudoValue("status"))
				}
				return st, 0
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return -1, f.ErrCode
			}
		case *http2.GoAwayFrame:
			c.t.Fatalf("waiting for stream %d's answer: GOAWAY %v %q", id, f.ErrCode, f.DebugData())
		}
	}
}

// goAway reads frames until GOAWAY and returns its code; the server then
// ends the connection.
func (c *rawClient) goAway() http2.ErrCode {
	c.t.Helper()
	for {
		f, err := c.read(5 * time.Second)
		if err != nil {
			c.t.Fatalf("waiting for GOAWAY: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			code := ga.ErrCode
			c.ended()
			c.nc.Close()
			return code
		}
	}
}

// ended reads until the connection ends, which must be within 5 s.
func (c *rawClient) ended() {
	c.t.Helper()
	for {
		_, err := c.read(5 * time.Second)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("the server did not end the connection")
		}
		if err != nil {
			return
		}
	}
}

// reset reads frames until an RST_STREAM on stream id and returns its
// code.
func (c *rawClient) reset(id uint32) http2.ErrCode {
	c.t.Helper()
	for {
		switch f := c.next().(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return f.ErrCode
			}
		case *http2.GoAwayFrame:
			c.t.Fatalf("waiting for stream %d's reset: GOAWAY %v", id, f.ErrCode)
		}
	}
}

// dialTLS makes the TLS connection of an HTTP/2 connection, and no more.
func dialTLS(t *testing.T, m *mesh, addr string) net.Conn {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, m.clientTLS(t, callerID, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	return tc
}

// activeConns is the server's count of open connections.
func (ts *testServer) activeConns() float64 { return testutil.ToFloat64(ts.Metrics.conns) }
