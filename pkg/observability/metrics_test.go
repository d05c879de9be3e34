package observability

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestOperationsPastTheCapCountAsOther(t *testing.T) {
	m := New()
	const maxOperations = 20
	m.SetOperationLimit(OperationLimit{Max: maxOperations})
	for i := range maxOperations + 5 {
		m.Operation("l", "op"+strconv.Itoa(i), "ok", time.Millisecond)
	}
	m.Operation("l", "op0", "ok", time.Millisecond)
	m.Operation("l", "op0", "timeout", time.Millisecond)
	m.Operation("l", "new", "timeout", time.Millisecond)
	cases := []struct {
		op, status string
		want       float64
	}{
		{"op0", "ok", 2},
		{"op0", "timeout", 1},
		{"op" + strconv.Itoa(maxOperations-1), "ok", 1},
		{"other", "ok", 5},
		{"other", "timeout", 1},
	}
	for _, c := range cases {
		if got := testutil.ToFloat64(m.ops.WithLabelValues("l", c.op, c.status)); got != c.want {
			t.Errorf("rosetta_operations_total{operation=%q,status=%q} = %v, want %v", c.op, c.status, got, c.want)
		}
	}
}

func TestOnlyListedOperationsHaveSeries(t *testing.T) {
	m := New()
	m.SetOperationLimit(OperationLimit{Names: []string{"sayHello", "GET"}})
	for _, op := range []string{"sayHello", "GET", "random1", "random2", "sayHello"} {
		m.Operation("l", op, "ok", time.Millisecond)
	}
	m.Operation("other-listener", "GET", "ok", time.Millisecond)
	for _, c := range []struct {
		listener, op string
		want         float64
	}{
		{"l", "sayHello", 2}, {"l", "GET", 1}, {"l", "other", 2}, {"other-listener", "GET", 1},
	} {
		if got := testutil.ToFloat64(m.ops.WithLabelValues(c.listener, c.op, "ok")); got != c.want {
			t.Errorf("rosetta_operations_total{listener=%q,operation=%q} = %v, want %v", c.listener, c.op, got, c.want)
		}
	}
	if got := testutil.CollectAndCount(m.ops); got != 4 {
		t.Errorf("operation series = %d, want 4 (two listed names, other, the second listener's GET)", got)
	}
}

func TestRequestCountsByStatus(t *testing.T) {
	m := New()
	m.Request("l", "r", "c", "ok", time.Millisecond)
	m.Request("l", "r", "c", "ok", time.Millisecond)
	m.Request("l", "r", "c", "timeout", time.Millisecond)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("l", "r", "c", "ok")); got != 2 {
		t.Errorf("ok requests = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("l", "r", "c", "timeout")); got != 1 {
		t.Errorf("timeout requests = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.duration); got != 1 {
		t.Errorf("duration series = %d, want 1", got)
	}
}

func TestSniffCounts(t *testing.T) {
	m := New()
	m.Sniffed("l", "dubbo")
	m.Sniffed("l", "dubbo")
	m.SniffFailed("l", "timeout")
	if got := testutil.ToFloat64(m.sniff.sniffed.WithLabelValues("l", "dubbo")); got != 2 {
		t.Errorf("sniffed dubbo = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.sniff.failed.WithLabelValues("l", "timeout")); got != 1 {
		t.Errorf("sniff failures (timeout) = %v, want 1", got)
	}
}
