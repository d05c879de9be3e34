package accesslog

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

var entry = Entry{
	Start:         time.Date(2026, 12, 7, 16, 0, 0, 123456000, time.UTC),
	Listener:      "dubbo-20880",
	Route:         "v2",
	Cluster:       "outbound|20880|v2|greeter",
	Upstream:      "10.0.0.7:20880",
	Protocol:      "dubbo",
	Service:       "org.example.Greeter",
	Method:        "sayHello",
	Status:        "ok",
	ResponseCode:  "ok",
	Duration:      1500 * time.Microsecond,
	RequestBytes:  210,
	ResponseBytes: 64,
	Tries:         2,
	TraceID:       "4bf92f3577b34da6a3ce929d0e0e4736",
	Caller:        "spiffe://cluster.local/ns/default/sa/client",
	Downstream:    "10.0.0.9:40000",
	Detail:        "",
}

func TestTextLine(t *testing.T) {
	c := mustCompile(t, &configv1alpha1.AccessLog{})
	got := string(c.Append(nil, &entry))
	want := "start_time=2026-12-07T16:00:00.123456Z listener=dubbo-20880 route=v2 cluster=outbound|20880|v2|greeter upstream=10.0.0.7:20880 " +
		"protocol=dubbo service=org.example.Greeter method=sayHello status=ok response_code=ok duration_ms=1.5 request_bytes=210 " +
		"response_bytes=64 tries=2 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 caller=spiffe://cluster.local/ns/default/sa/client " +
		"downstream=10.0.0.9:40000 detail=-\n"
	if got != want {
		t.Fatalf("line:\n got %q\nwant %q", got, want)
	}
}

func TestTextQuotesWhatCouldForgeALine(t *testing.T) {
	c := mustCompile(t, &configv1alpha1.AccessLog{Fields: []string{"method", "detail"}})
	e := entry
	e.Method = "a b\nstatus=ok"
	e.Detail = "x=\"y\"\xff"
	got := string(c.Append(nil, &e))
	want := `method="a b\nstatus=ok" detail="x=\"y\"\ufffd"` + "\n"
	if got != want {
		t.Fatalf("line:\n got %q\nwant %q", got, want)
	}
}

func TestJSONLine(t *testing.T) {
	c := mustCompile(t, &configv1alpha1.AccessLog{Format: configv1alpha1.AccessLog_JSON, Fields: []string{"route", "method", "duration_ms", "tries", "detail"}})
	e := entry
	e.Method = "say\"Hello\"\x01\u2028"
	line := c.Append(nil, &e)
	if line[len(line)-1] != '\n' || strings.Count(string(line), "\n") != 1 {
		t.Fatalf("not one line: %q", line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	want := map[string]any{"route": "v2", "method": "say\"Hello\"\x01\u2028", "duration_ms": 1.5, "tries": 2.0, "detail": ""}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("fields %v, want only %v", got, want)
	}
}

func TestCompileRefusesNamingTheField(t *testing.T) {
	nan := 0.0
	nan /= nan
	for _, tc := range []struct {
		pb   *configv1alpha1.AccessLog
		want string
	}{
		{&configv1alpha1.AccessLog{Fields: []string{"route", "verb"}}, `fields[1]: "verb" is not a field`},
		{&configv1alpha1.AccessLog{Fields: []string{"route", "route"}}, `fields[1]: "route" is listed twice`},
		{&configv1alpha1.AccessLog{Format: 7}, "format: 7 is not TEXT or JSON"},
		{&configv1alpha1.AccessLog{SamplePercent: proto.Float64(101)}, "sample_percent: 101 is not between 0 and 100"},
		{&configv1alpha1.AccessLog{SamplePercent: proto.Float64(-1)}, "sample_percent: -1"},
		{&configv1alpha1.AccessLog{SamplePercent: &nan}, "sample_percent: NaN"},
		{&configv1alpha1.AccessLog{Path: "a\x00b"}, "path: must not hold a NUL byte"},
	} {
		_, err := Compile(tc.pb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.pb, err, tc.want)
		}
	}
	if c, err := Compile(nil); c != nil || err != nil {
		t.Errorf("nil: %v, %v; want logs off", c, err)
	}
}

func TestSampling(t *testing.T) {
	count := func(pct float64) int {
		l := &Logger{cfg: mustCompile(t, &configv1alpha1.AccessLog{SamplePercent: proto.Float64(pct)})}
		n := 0
		for range 10000 {
			if l.Sample() {
				n++
			}
		}
		return n
	}
	if n := count(0); n != 0 {
		t.Errorf("0%%: %d sampled", n)
	}
	if n := count(100); n != 10000 {
		t.Errorf("100%%: %d sampled", n)
	}
	if n := count(25); n < 2200 || n > 2800 {
		t.Errorf("25%%: %d of 10000 sampled", n)
	}
}

// A file sink gets every line whole, from many goroutines at once.
func TestFileSinkWritesWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	s := NewSinks(nil)
	l, err := s.Logger(mustCompile(t, &configv1alpha1.AccessLog{Path: path, Format: configv1alpha1.AccessLog_JSON}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 500 {
				l.Log(&entry)
				time.Sleep(10 * time.Microsecond)
			}
		}()
	}
	for range 4 {
		<-done
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	dropped := testutil.ToFloat64(s.dropped.WithLabelValues(path))
	if len(lines)+int(dropped) != 2000 {
		t.Fatalf("%d lines written and %v dropped, want 2000 in all", len(lines), dropped)
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d %q: %v", i, line, err)
		}
	}
}

// A writer that does not keep up costs lines, counted, never a wait.
func TestFullQueueDropsAndCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := NewSinks(reg)
	block := make(chan struct{})
	sk := &sink{w: blockingWriter(block), lines: make(chan *[]byte, queueLines), quit: make(chan struct{}), done: make(chan struct{}), dropped: s.dropped.WithLabelValues("blocked")}
	go sk.run()
	l := &Logger{cfg: mustCompile(t, &configv1alpha1.AccessLog{}), sink: sk}
	start := time.Now()
	for range queueLines + 1000 {
		l.Log(&entry)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("logging took %v with a stuck writer", d)
	}
	if got := testutil.ToFloat64(s.dropped.WithLabelValues("blocked")); got < 500 {
		t.Errorf("dropped %v, want at least 500 (the queue and one batch are full)", got)
	}
	close(block)
	close(sk.quit)
	<-sk.done
}

type blockingWriter chan struct{}

func (b blockingWriter) Write(p []byte) (int, error) { <-b; return len(p), nil }

func TestTraceIDOf(t *testing.T) {
	for in, want := range map[string]string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "4bf92f3577b34da6a3ce929d0e0e4736",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01": "",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01": "",
		"garbage": "",
	} {
		if got := TraceIDOf(in); got != want {
			t.Errorf("TraceIDOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func mustCompile(t *testing.T, pb *configv1alpha1.AccessLog) *Config {
	t.Helper()
	c, err := Compile(pb)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
