// Package dubbopeer is a small Dubbo 2 provider and consumer for tests, the
// demo and the load benchmark. It writes and reads frames with the real
// library github.com/apache/dubbo-go-hessian2 (v1.12.5, the last release with
// the Dubbo packet codec), so it is an independent peer for Rosetta's own
// codec: a frame Rosetta gets wrong fails here the way it would fail a
// dubbo-go application.
//
// A Consumer multiplexes concurrent calls over one connection by request id.
// A Provider answers two-way calls, oneway calls and heartbeats, each call in
// its own goroutine, so one connection from a proxy carries many calls at once.
package dubbopeer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// Dubbo response statuses (the header's fourth byte).
const (
	StatusOK              byte = 20
	StatusClientTimeout   byte = 30
	StatusServerTimeout   byte = 31
	StatusBadRequest      byte = 40
	StatusBadResponse     byte = 50
	StatusServiceNotFound byte = 60
	StatusServiceError    byte = 70
	StatusServerError     byte = 80
	StatusClientError     byte = 90
	StatusThreadPoolFull  byte = 100
)

var statusNames = map[byte]string{
	StatusOK:              "ok",
	StatusClientTimeout:   "client timeout",
	StatusServerTimeout:   "server timeout",
	StatusBadRequest:      "bad request",
	StatusBadResponse:     "bad response",
	StatusServiceNotFound: "service not found",
	StatusServiceError:    "service error",
	StatusServerError:     "server error",
	StatusClientError:     "client error",
	StatusThreadPoolFull:  "server thread pool exhausted",
}

// StatusName names a Dubbo status byte.
func StatusName(s byte) string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("status %d", s)
}

const (
	headerLen = hessian.HEADER_LENGTH
	// MaxFrame is the largest frame either side reads, header included: the
	// 8 MiB payload limit of Dubbo and of the library.
	MaxFrame = hessian.DEFAULT_LEN
	// hessian2 is the serialization id this package speaks.
	hessian2 = 2
	// providerKey is the response attachment naming the provider that answered.
	providerKey = "provider"
	// dubboVersion goes in the "dubbo" attachment; the library writes response
	// attachments only for a peer version that supports them.
	dubboVersion = hessian.DEFAULT_DUBBO_PROTOCOL_VERSION
)

// StatusError is a response with a status other than 20: the proxy's local
// replies (60 for no route) and a provider's protocol-level failures.
type StatusError struct {
	Status  byte
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("dubbopeer: status %d (%s): %s", e.Status, StatusName(e.Status), e.Message)
}

// Exception is a status 20 response carrying an exception: the service itself
// failed (a handler returned an error that is not a *StatusError).
type Exception struct {
	Message string
}

func (e *Exception) Error() string { return "dubbopeer: service exception: " + e.Message }

// Service names the remote service of a call.
type Service struct {
	Interface string
	Version   string
	Group     string
	// Timeout goes to the provider in the "timeout" attachment; it does not
	// bound the call (the context does).
	Timeout time.Duration
}

// frameReader reads whole Dubbo frames from a connection and hands each to
// the library's codec. It reuses its buffers, so a frame's bytes are valid
// only until the next call to next.
type frameReader struct {
	br    *bufio.Reader
	frame []byte
	src   bytes.Reader
	lib   *bufio.Reader // the library reads the current frame from here
	codec *hessian.HessianCodec
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, 32<<10)}
}

// next reads one frame and its header; afterwards fr.codec.ReadBody reads the
// body, and body holds its raw bytes.
func (fr *frameReader) next() (h hessian.DubboHeader, body []byte, err error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(fr.br, hdr[:]); err != nil {
		return h, nil, err
	}
	if hdr[0] != hessian.MAGIC_HIGH || hdr[1] != hessian.MAGIC_LOW {
		return h, nil, fmt.Errorf("dubbopeer: bad magic %x", hdr[:2])
	}
	n := binary.BigEndian.Uint32(hdr[12:])
	if int64(n) > MaxFrame-headerLen {
		return h, nil, fmt.Errorf("dubbopeer: body of %d bytes is over the %d byte limit", n, MaxFrame-headerLen)
	}
	total := headerLen + int(n)
	if cap(fr.frame) < total {
		fr.frame = make([]byte, total)
	}
	fr.frame = fr.frame[:total]
	copy(fr.frame, hdr[:])
	if _, err := io.ReadFull(fr.br, fr.frame[headerLen:]); err != nil {
		return h, nil, err
	}
	fr.src.Reset(fr.frame)
	if fr.lib == nil || fr.lib.Size() < total {
		fr.lib = bufio.NewReaderSize(&fr.src, max(total, 4<<10))
		fr.codec = hessian.NewHessianCodec(fr.lib)
	} else {
		fr.lib.Reset(&fr.src)
	}
	if err := fr.codec.ReadHeader(&h); err != nil {
		return h, nil, fmt.Errorf("dubbopeer: header: %w", err)
	}
	if h.SerialID != hessian2 {
		return h, nil, fmt.Errorf("dubbopeer: serialization %d is not hessian2", h.SerialID)
	}
	return h, fr.frame[headerLen:], nil
}

// readBody runs the library's body decoder, turning a panic on hostile input
// into an error.
func (fr *frameReader) readBody(into any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("dubbopeer: body: %v", r)
		}
	}()
	return fr.codec.ReadBody(into)
}

// errorMessage reads the body of a response with a non-20 status: a hessian2
// string, as Dubbo's ExchangeCodec writes it.
func errorMessage(body []byte) string {
	v, err := hessian.NewDecoder(body).Decode()
	if err != nil {
		return fmt.Sprintf("(unreadable error body: %v)", err)
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// encode writes one frame with the library's codec.
func encode(svc hessian.Service, h hessian.DubboHeader, body any) ([]byte, error) {
	h.SerialID = hessian2
	b, err := hessian.NewHessianCodec(nil).Write(svc, h, body)
	if err != nil {
		return nil, fmt.Errorf("dubbopeer: encode: %w", err)
	}
	return b, nil
}

func heartbeatResponse(id int64) ([]byte, error) {
	return encode(hessian.Service{}, hessian.DubboHeader{Type: hessian.PackageHeartbeat, ID: id, ResponseStatus: StatusOK}, nil)
}

// maxPending bounds the bytes queued on a connection before writers wait.
const maxPending = 4 << 20

// frameWriter lets many goroutines write whole frames to one connection and
// batches them: the first writer to find the connection idle writes
// everything queued meanwhile, so concurrent calls share system calls.
type frameWriter struct {
	nc       net.Conn
	mu       sync.Mutex
	drained  sync.Cond
	queue    []byte
	spare    []byte
	flushing bool
	err      error
}

func newFrameWriter(nc net.Conn) *frameWriter {
	w := &frameWriter{nc: nc}
	w.drained.L = &w.mu
	return w
}

// write queues head and then tail as one frame (tail may be nil) and returns
// once they are queued; a write error surfaces on a later write and, since
// the connection is closed with it, on the reader.
func (w *frameWriter) write(head, tail []byte) error {
	w.mu.Lock()
	for len(w.queue) > maxPending && w.err == nil {
		w.drained.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.queue = append(w.queue, head...)
	w.queue = append(w.queue, tail...)
	if w.flushing {
		w.mu.Unlock()
		return nil
	}
	w.flushing = true
	for len(w.queue) > 0 && w.err == nil {
		out := w.queue
		w.queue = w.spare[:0]
		w.mu.Unlock()
		_, err := w.nc.Write(out)
		w.mu.Lock()
		w.spare = out[:0]
		if err != nil {
			w.err = err
			w.nc.Close()
		}
		w.drained.Broadcast()
	}
	w.flushing = false
	err := w.err
	w.mu.Unlock()
	return err
}

var errClosed = errors.New("dubbopeer: connection closed")
