package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryMax is where cgroup v2 gives the container's memory limit.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// setMemoryLimit gives Go's collector a soft limit: flag when positive,
// else nine tenths of the container's memory limit when there is one. The
// buffer budget bounds the live bytes a hostile peer makes the proxy hold;
// the collector, left at --gc-percent alone, lets the heap grow to three
// times what is live before it collects, and a pod at its limit is killed.
// GOMEMLIMIT in the environment wins. It returns the limit set, 0 for none.
func setMemoryLimit(flag int64) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := flag
	if limit <= 0 {
		limit = containerMemory(cgroupMemoryMax) / 10 * 9
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	return limit
}

// containerMemory reads a cgroup v2 memory.max; 0 when there is no limit.
func containerMemory(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil { // "max": no limit
		return 0
	}
	return n
}
