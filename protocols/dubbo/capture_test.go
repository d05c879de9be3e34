package dubbo

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// The captures in testdata/ are written by hessian2's own Dubbo packet codec
// (the one dubbo-go used): go test ./protocols/dubbo -run TestCaptures -update
var update = flag.Bool("update", false, "rewrite the testdata/*.bin captures")

// User is a POJO registered with hessian, as a Java class the caller knows.
type User struct {
	Name string
	Age  int32
	Tags []string
}

func (User) JavaClassName() string { return "org.example.User" }

func init() { hessian.RegisterPOJO(&User{}) }

// capture is one frame the real library writes and what our Decode must see.
type capture struct {
	name   string
	kind   codec.Kind
	id     uint64
	status codec.Status
	attrs  map[string]string // every attribute Range must report
	// loose: the library's strict request decoder refuses the frame (an
	// unregistered class), so it is compared with the non-strict decoder.
	loose bool
	build func() ([]byte, error)
}

var greeter = hessian.Service{
	Path:      "org.example.Greeter",
	Interface: "org.example.Greeter",
	Group:     "blue",
	Version:   "1.0.0",
	Method:    "sayHello",
	Timeout:   3 * time.Second,
}

// twoWayArgs are the arguments of the two-way request: a string, an int, a
// map and a registered POJO.
func twoWayArgs() []any {
	return []any{
		"world",
		int32(42),
		map[any]any{"k": "v", "n": int32(7)},
		&User{Name: "ann", Age: 31, Tags: []string{"a", "b"}},
	}
}

func write(svc hessian.Service, h hessian.DubboHeader, body any) ([]byte, error) {
	h.SerialID = serialHessian2
	return hessian.NewHessianCodec(nil).Write(svc, h, body)
}

func captures() []capture {
	return []capture{{
		name: "request_twoway", kind: codec.KindRequest, id: 1001,
		attrs: map[string]string{
			"interface": "org.example.Greeter", "method": "sayHello", "version": "1.0.0",
			"path": "org.example.Greeter", "group": "blue", "timeout": "3000",
			"traceid": "t-123", "env": "canary",
		},
		build: func() ([]byte, error) {
			req := hessian.NewRequest(twoWayArgs(), map[string]string{"traceid": "t-123", "env": "canary"})
			return write(greeter, hessian.DubboHeader{Type: hessian.PackageRequest_TwoWay, ID: 1001}, req)
		},
	}, {
		name: "request_oneway", kind: codec.KindOneway, id: 1002,
		attrs: map[string]string{
			"interface": "org.example.Notifier", "method": "notify", "version": "",
			"path": "org.example.Notifier", "version_attachment_is_empty": "",
		},
		build: func() ([]byte, error) {
			svc := hessian.Service{Path: "org.example.Notifier", Interface: "org.example.Notifier", Method: "notify"}
			req := hessian.NewRequest([]any{"ping"}, map[string]string{"version_attachment_is_empty": ""})
			return write(svc, hessian.DubboHeader{Type: hessian.PackageRequest, ID: 1002}, req)
		},
	}, {
		// An argument of a Java class no Go type is registered for.
		name: "request_unknown_class", kind: codec.KindRequest, id: 1003, loose: true,
		attrs: map[string]string{
			"interface": "org.example.Greeter", "method": "greetAll", "version": "2.0.0",
			"path": "org.example.Greeter", "group": "green", "interface_extra": "x",
		},
		build: func() ([]byte, error) {
			svc := greeter
			svc.Method, svc.Version, svc.Group, svc.Timeout = "greetAll", "2.0.0", "green", 0
			arg := map[string]any{"_class": "org.example.Unregistered", "name": "x", "level": int32(7)}
			req := hessian.NewRequest([]any{arg, "tail"}, map[string]string{"interface_extra": "x"})
			return write(svc, hessian.DubboHeader{Type: hessian.PackageRequest_TwoWay, ID: 1003}, req)
		},
	}, {
		name: "heartbeat_request", kind: codec.KindHeartbeat, id: 1004, attrs: map[string]string{},
		build: func() ([]byte, error) {
			return write(hessian.Service{}, hessian.DubboHeader{Type: hessian.PackageHeartbeat, ID: 1004}, []any{})
		},
	}, {
		name: "heartbeat_response", kind: codec.KindHeartbeatResponse, id: 1004, attrs: map[string]string{},
		build: func() ([]byte, error) {
			h := hessian.DubboHeader{Type: hessian.PackageHeartbeat, ID: 1004, ResponseStatus: hessian.Response_OK}
			return write(hessian.Service{}, h, nil)
		},
	}, {
		name: "response_value", kind: codec.KindResponse, id: 1001, attrs: map[string]string{},
		build: func() ([]byte, error) {
			h := hessian.DubboHeader{Type: hessian.PackageResponse, ID: 1001, ResponseStatus: hessian.Response_OK}
			return write(hessian.Service{}, h, hessian.NewResponse("hello world", nil, nil))
		},
	}, {
		name: "response_value_attachments", kind: codec.KindResponse, id: 1001,
		attrs: map[string]string{"dubbo": "2.0.2", "traceid": "t-123"},
		build: func() ([]byte, error) {
			h := hessian.DubboHeader{Type: hessian.PackageResponse, ID: 1001, ResponseStatus: hessian.Response_OK}
			rsp := hessian.NewResponse(&User{Name: "bob", Age: 40}, nil, map[string]string{"dubbo": "2.0.2", "traceid": "t-123"})
			return write(hessian.Service{}, h, rsp)
		},
	}, {
		name: "response_null", kind: codec.KindResponse, id: 1005, attrs: map[string]string{},
		build: func() ([]byte, error) {
			h := hessian.DubboHeader{Type: hessian.PackageResponse, ID: 1005, ResponseStatus: hessian.Response_OK}
			return write(hessian.Service{}, h, hessian.NewResponse(nil, nil, nil))
		},
	}, {
		name: "response_exception", kind: codec.KindResponse, id: 1006, status: codec.StatusError, attrs: map[string]string{},
		build: func() ([]byte, error) {
			h := hessian.DubboHeader{Type: hessian.PackageResponse, ID: 1006, ResponseStatus: hessian.Response_OK}
			return write(hessian.Service{}, h, hessian.NewResponse(nil, errors.New("boom"), nil))
		},
	}, {
		name: "response_service_error", kind: codec.KindResponse, id: 1007, status: codec.StatusError, attrs: map[string]string{},
		build: func() ([]byte, error) {
			h := hessian.DubboHeader{Type: hessian.PackageResponse, ID: 1007, ResponseStatus: hessian.Response_SERVICE_ERROR}
			return write(hessian.Service{}, h, hessian.NewResponse(nil, errors.New("service failed"), nil))
		},
	}}
}

// TestCaptures rewrites testdata/ with -update; otherwise it checks that the
// library still writes what testdata/ holds, byte for byte or, where Go's map
// order makes bytes differ, value for value.
func TestCaptures(t *testing.T) {
	for _, c := range captures() {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.build()
			if err != nil {
				t.Fatalf("hessian Write: %v", err)
			}
			path := filepath.Join("testdata", c.name+".bin")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write the captures)", err)
			}
			if bytes.Equal(got, want) {
				return
			}
			if c.loose {
				ga, gm := libDecodeLoose(t, got)
				wa, wm := libDecodeLoose(t, want)
				if !reflect.DeepEqual(ga, wa) || !reflect.DeepEqual(gm, wm) {
					t.Fatalf("%s drifted from what the library writes:\n got  %v %v\n want %v %v", path, ga, gm, wa, wm)
				}
				return
			}
			g, err := libDecode(got)
			if err != nil {
				t.Fatalf("library decode of a fresh capture: %v", err)
			}
			w, err := libDecode(want)
			if err != nil {
				t.Fatalf("library decode of %s: %v", path, err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("%s drifted from what the library writes:\n got  %+v\n want %+v", path, g, w)
			}
		})
	}
}

func readCapture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".bin"))
	if err != nil {
		t.Fatalf("%v (run go test -run TestCaptures -update)", err)
	}
	return b
}

// libFrame is a frame as hessian2's Dubbo codec reads it.
type libFrame struct {
	Header hessian.DubboHeader
	Req    []any             // a request's 7 values, as ReadBody gives them
	Rsp    *hessian.Response // a response
	Err    string            // a response's exception text
}

// libDecode reads a frame with hessian2's own Dubbo codec: ReadHeader, then
// ReadBody. Requests go through the library's strict decoder, which only
// knows registered classes; libDecodeLoose handles the others.
func libDecode(b []byte) (*libFrame, error) {
	c := hessian.NewHessianCodec(bufio.NewReaderSize(bytes.NewReader(b), len(b)+headerLen))
	f := &libFrame{}
	if err := c.ReadHeader(&f.Header); err != nil {
		return nil, fmt.Errorf("ReadHeader: %w", err)
	}
	switch {
	case f.Header.Type&hessian.PackageHeartbeat != 0:
		return f, c.ReadBody(nil)
	case f.Header.Type&hessian.PackageRequest != 0:
		f.Req = make([]any, 7)
		if err := c.ReadBody(f.Req); err != nil {
			return nil, fmt.Errorf("ReadBody: %w", err)
		}
		return f, nil
	}
	f.Rsp = &hessian.Response{}
	if err := c.ReadBody(f.Rsp); err != nil {
		return nil, fmt.Errorf("ReadBody: %w", err)
	}
	if f.Rsp.Exception != nil {
		f.Err = f.Rsp.Exception.Error()
		f.Rsp.Exception = nil
	}
	return f, nil
}

// libDecodeLoose reads a request body with hessian2's non-strict decoder,
// which turns objects of unregistered classes into maps: the dubbo version,
// path, version, method, types, the arguments and the attachments.
func libDecodeLoose(t *testing.T, b []byte) (args []any, atts map[any]any) {
	t.Helper()
	d := hessian.NewDecoder(b[headerLen:])
	var vals []any
	for i := 0; i < 5; i++ {
		v, err := d.Decode()
		if err != nil {
			t.Fatalf("library decode of value %d: %v", i, err)
		}
		vals = append(vals, v)
	}
	n, err := countParams(vals[4].(string))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		v, err := d.Decode()
		if err != nil {
			t.Fatalf("library decode of argument %d: %v", i, err)
		}
		args = append(args, v)
	}
	v, err := d.Decode()
	if err != nil {
		t.Fatalf("library decode of the attachments: %v", err)
	}
	atts, ok := v.(map[any]any)
	if !ok {
		t.Fatalf("attachments decoded as %T", v)
	}
	return append(vals[:4:4], args...), atts
}
