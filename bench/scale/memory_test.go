package main

import (
	"bytes"
	"runtime"
	"runtime/pprof"
	"testing"
)

// TestParseMemStats reads this process's own debug=1 heap profile, as
// the controller's /debug/pprof/heap serves it.
func TestParseMemStats(t *testing.T) {
	keep := make([]byte, 8<<20)
	var buf bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	heap, stack, err := parseMemStats(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if heap < uint64(len(keep)) || stack == 0 {
		t.Errorf("heap %d, stack %d: want the heap to hold the %d bytes kept, and some stack", heap, stack, len(keep))
	}
	runtime.KeepAlive(keep)
	if _, _, err := parseMemStats(bytes.NewBufferString("heap profile: 0: 0 [0: 0] @ heap/1048576\n")); err == nil {
		t.Error("a profile without MemStats parsed")
	}
}

func TestKeptProxies(t *testing.T) {
	for _, c := range []struct{ proxies, namespaces, want int }{
		{1000, 10, 100},
		{1000, 100, 100},
		{100, 10, 10},
		{3, 2, 2},
		{10, 10, 0}, // one proxy per namespace: none can leave
		{1, 1, 0},
	} {
		if got := keptProxies(c.proxies, c.namespaces); got != c.want {
			t.Errorf("keptProxies(%d, %d) = %d, want %d", c.proxies, c.namespaces, got, c.want)
		}
	}
}
