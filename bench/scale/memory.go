package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Memory per connected proxy: the controller's live memory (heap and
// goroutine stacks, right after a collection) with every proxy
// connected, minus the same once all but the kept ones have left,
// divided by the proxies that left. The kept proxies hold at least one
// of every namespace, so every scope keeps its shared config and the
// difference is what each proxy costs beyond it. It is measured at the
// end of a run, after the edits, so it includes what serving edits
// leaves per proxy.

// liveMemory is the controller's heap in use and its goroutine stacks,
// read from /debug/pprof/heap?gc=1&debug=1: the handler collects garbage
// first, and the text ends with runtime.MemStats read after it.
func liveMemory(debugAddr string) (heap, stack uint64, err error) {
	resp, err := (&http.Client{Timeout: time.Minute}).Get("http://" + debugAddr + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, 0, fmt.Errorf("scale: heap: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("scale: heap: %s", resp.Status)
	}
	return parseMemStats(resp.Body)
}

// parseMemStats reads HeapAlloc and the stack in use from the
// "# runtime.MemStats" part of a debug=1 heap profile ("# HeapAlloc = N",
// "# Stack = INUSE / SYS").
func parseMemStats(r io.Reader) (heap, stack uint64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var haveHeap, haveStack bool
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			heap, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			haveHeap = err == nil
		}
		if v, ok := strings.CutPrefix(line, "# Stack = "); ok {
			inuse, _, _ := strings.Cut(v, " / ")
			stack, err = strconv.ParseUint(strings.TrimSpace(inuse), 10, 64)
			haveStack = err == nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("scale: heap: %w", err)
	}
	if !haveHeap || !haveStack {
		return 0, 0, fmt.Errorf("scale: heap: no HeapAlloc or Stack in the profile")
	}
	return heap, stack, nil
}

// settledMemory reads liveMemory until two reads 2 s apart are within
// 1% (connections that closed are still being torn down before), at most
// within, and returns the last, heap and stacks together.
func settledMemory(ctx context.Context, debugAddr string, within time.Duration) (uint64, error) {
	deadline := time.Now().Add(within)
	var last uint64
	for {
		heap, stack, err := liveMemory(debugAddr)
		if err != nil {
			return 0, err
		}
		now := heap + stack
		if last != 0 && absDiff(now, last)*100 <= last || time.Now().After(deadline) {
			return now, nil
		}
		last = now
		if err := sleep(ctx, 2*time.Second); err != nil {
			return 0, err
		}
	}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// keptProxies is how many proxies stay connected for the second reading:
// a tenth, but at least one per namespace. Zero when that leaves none to
// disconnect.
func keptProxies(proxies, namespaces int) int {
	kept := max((proxies+9)/10, namespaces)
	if kept >= proxies {
		return 0
	}
	return kept
}

// memoryResult is the measure of memory per connected proxy.
type memoryResult struct {
	// all and kept are the live bytes with every proxy connected and
	// with the kept ones; left the proxies that disconnected.
	all, kept  uint64
	left       int
	perProxyKB float64
}

// measureMemoryPerProxy reads the controller's live memory with every
// proxy connected, disconnects all but the kept ones, waits until the
// controller counts only those, and reads it again; nil when no proxy
// can leave.
func measureMemoryPerProxy(ctx context.Context, o options, debugAddr, metricsURL string, proxies []*proxy) (*memoryResult, error) {
	kept := keptProxies(len(proxies), o.namespaces)
	if kept == 0 {
		return nil, nil
	}
	all, err := settledMemory(ctx, debugAddr, time.Minute)
	if err != nil {
		return nil, err
	}
	for _, p := range proxies[kept:] {
		p.stop()
	}
	deadline := time.Now().Add(o.timeout)
	for {
		n, err := metricSum(metricsURL, "rosetta_xds_connected_proxies")
		if err != nil {
			return nil, err
		}
		if int(n) == kept {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("scale: %v proxies still connected after %v, want %d", n, o.timeout, kept)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	after, err := settledMemory(ctx, debugAddr, time.Minute)
	if err != nil {
		return nil, err
	}
	m := &memoryResult{all: all, kept: after, left: len(proxies) - kept}
	m.perProxyKB = (float64(all) - float64(after)) / float64(m.left) / 1024
	o.logf("memory per proxy: %.1f KB (%.1f MB with %d proxies, %.1f MB with %d)", m.perProxyKB,
		float64(all)/(1<<20), len(proxies), float64(after)/(1<<20), kept)
	return m, nil
}
