package dubbokit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// Call is one request a RawConn sends.
type Call struct {
	Interface   string // Greeter when empty
	Version     string
	Group       string
	Method      string
	Arg         string
	Attachments map[string]string
	OneWay      bool
}

// Response is one frame a RawConn read.
type Response struct {
	ID        int64
	Status    byte // 20 is OK
	Heartbeat bool
	// Readonly: the frame is the peer's readonly event (a oneway event
	// request whose body is the hessian2 string "R"), which a provider
	// sends when it shuts down.
	Readonly bool
	// Value is the answer of an OK call with a string result.
	Value string
	// Err is the exception of an OK status, or the error text of another
	// status; empty when the call succeeded.
	Err string
}

// Dubbo response status bytes a test may look for.
const (
	StatusOK              = 20
	StatusServiceNotFound = 60
	StatusServiceError    = 70
	StatusServerError     = 80
)

// maxRawBody caps a body length read from the wire.
const maxRawBody = 1 << 20

// RawConn is one TCP connection speaking Dubbo frame by frame, encoded with
// dubbo-go-hessian2 v1.12.5's packet codec. Unlike dubbo-go's client, it lets
// a test choose request ids (several RawConns may use the same ids) and send
// bytes that are not Dubbo at all.
type RawConn struct {
	conn net.Conn
	wmu  sync.Mutex
}

// DialRaw connects to addr and closes the connection when the test ends.
func DialRaw(t testing.TB, addr string) *RawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("dubbokit: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &RawConn{conn: c}
}

// Close closes the connection.
func (r *RawConn) Close() error { return r.conn.Close() }

// Write sends bytes as they are.
func (r *RawConn) Write(b []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_, err := r.conn.Write(b)
	return err
}

// Send sends one request frame with the given id.
func (r *RawConn) Send(id int64, c Call) error {
	b, err := EncodeRequest(id, c)
	if err != nil {
		return err
	}
	return r.Write(b)
}

// EncodeRequest encodes a hessian2 Dubbo request frame.
func EncodeRequest(id int64, c Call) ([]byte, error) {
	if c.Interface == "" {
		c.Interface = Greeter
	}
	typ := hessian.PackageRequest_TwoWay
	if c.OneWay {
		typ = hessian.PackageRequest
	}
	atts := make(map[string]string, len(c.Attachments))
	for k, v := range c.Attachments {
		atts[k] = v
	}
	svc := hessian.Service{Path: c.Interface, Interface: c.Interface, Version: c.Version, Group: c.Group, Method: c.Method}
	hdr := hessian.DubboHeader{SerialID: 2, Type: typ, ID: id}
	b, err := hessian.NewHessianCodec(nil).Write(svc, hdr, hessian.NewRequest([]any{c.Arg}, atts))
	if err != nil {
		return nil, fmt.Errorf("dubbokit: encode request: %w", err)
	}
	return b, nil
}

// Read reads the next frame, waiting at most timeout. Heartbeat requests
// from the peer are answered and skipped; its readonly event is returned
// (Response.Readonly).
func (r *RawConn) Read(timeout time.Duration) (Response, error) {
	if err := r.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Response{}, err
	}
	for {
		resp, hbReq, err := r.readFrame()
		if err != nil || !hbReq {
			return resp, err
		}
		if err := r.answerHeartbeat(resp.ID); err != nil {
			return Response{}, err
		}
	}
}

func (r *RawConn) readFrame() (resp Response, heartbeatRequest bool, err error) {
	var h [16]byte
	if _, err := io.ReadFull(r.conn, h[:]); err != nil {
		return Response{}, false, err
	}
	if h[0] != 0xda || h[1] != 0xbb {
		return Response{}, false, fmt.Errorf("dubbokit: bad magic % x", h[:2])
	}
	n := binary.BigEndian.Uint32(h[12:])
	if n > maxRawBody {
		return Response{}, false, fmt.Errorf("dubbokit: body of %d bytes is over %d", n, maxRawBody)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.conn, body); err != nil {
		return Response{}, false, err
	}
	resp = Response{ID: int64(binary.BigEndian.Uint64(h[4:])), Status: h[3], Heartbeat: h[2]&0x20 != 0}
	if h[2]&0x80 != 0 { // a request from the peer
		if resp.Heartbeat && h[2]&0x40 == 0 && isReadonly(body) {
			resp.Readonly = true
			return resp, false, nil
		}
		if resp.Heartbeat {
			return resp, true, nil
		}
		return Response{}, false, fmt.Errorf("dubbokit: unexpected request %d from the peer", resp.ID)
	}
	if resp.Heartbeat {
		return resp, false, nil
	}
	return resp, false, decodeResponseBody(&resp, body)
}

// isReadonly reports whether an event's body is READONLY_EVENT ("R").
func isReadonly(body []byte) bool {
	v, err := hessian.NewDecoder(body).Decode()
	return err == nil && v == "R"
}

// decodeResponseBody fills Value or Err from a hessian2 response body.
func decodeResponseBody(resp *Response, body []byte) error {
	dec := hessian.NewDecoder(body)
	if resp.Status != StatusOK {
		v, err := dec.Decode()
		if err != nil {
			return fmt.Errorf("dubbokit: error body of status %d: %w", resp.Status, err)
		}
		resp.Err = fmt.Sprint(v)
		return nil
	}
	flag, err := dec.Decode()
	if err != nil {
		return fmt.Errorf("dubbokit: response flag: %w", err)
	}
	f, ok := flag.(int32)
	if !ok {
		return fmt.Errorf("dubbokit: response flag is %T", flag)
	}
	switch f {
	case 0, 3: // exception
		v, err := dec.Decode()
		if err != nil {
			return fmt.Errorf("dubbokit: exception: %w", err)
		}
		resp.Err = fmt.Sprint(v)
		if e, ok := v.(error); ok {
			resp.Err = e.Error()
		}
	case 1, 4: // value
		v, err := dec.Decode()
		if err != nil {
			return fmt.Errorf("dubbokit: value: %w", err)
		}
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("dubbokit: value is %T, want string", v)
		}
		resp.Value = s
	case 2, 5: // null
	default:
		return fmt.Errorf("dubbokit: unknown response flag %d", f)
	}
	return nil
}

// answerHeartbeat answers a heartbeat request as a Dubbo client does.
func (r *RawConn) answerHeartbeat(id int64) error {
	frame := []byte{0xda, 0xbb, 0x22, StatusOK, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'N'}
	binary.BigEndian.PutUint64(frame[4:], uint64(id))
	return r.Write(frame)
}

// Heartbeat sends a heartbeat request with the given id.
func (r *RawConn) Heartbeat(id int64) error {
	frame := []byte{0xda, 0xbb, 0xe2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'N'}
	binary.BigEndian.PutUint64(frame[4:], uint64(id))
	return r.Write(frame)
}

// WaitClosed reads until the peer closes the connection, discarding frames,
// and fails when it stays open for timeout.
func (r *RawConn) WaitClosed(timeout time.Duration) error {
	if err := r.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		_, err := r.conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("dubbokit: connection still open after %v", timeout)
		}
		return nil // EOF or reset: closed
	}
}
