package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/memlimit"
)

// With -memory-max the controller runs in a memory cgroup of its own, as
// in a container with a memory limit: the kernel charges it its pages
// (the page cache of the files it reads too), reclaims and then kills it
// at the limit, and the controller sets its soft limit from the cgroup as
// it does in a pod. A run without the limit measures what the controller
// would take, not how it behaves in the pod a user gives it.

// cgroupFS is where the cgroup file systems are mounted.
const cgroupFS = "/sys/fs/cgroup"

// memCgroup is a memory cgroup made for one run and removed after it.
type memCgroup struct {
	dir string
	max int64
	// The files of its version: cgroup.procs (both), the peak, and the
	// file whose oom_kill line counts the processes the kernel killed.
	procs, peak, events string
}

// newMemCgroup makes a cgroup limited to max bytes: on cgroup v2, a child
// of the root with the memory controller enabled for it; else, on a
// cgroup v1 memory hierarchy, a child of the harness's own memory cgroup.
// Its error says what is missing.
func newMemCgroup(max int64) (*memCgroup, error) {
	name := fmt.Sprintf("rosetta-bench-%d", os.Getpid())
	if hasController(filepath.Join(cgroupFS, "cgroup.controllers"), "memory") {
		return newV2(filepath.Join(cgroupFS, name), max)
	}
	v1 := filepath.Join(cgroupFS, "memory")
	if _, err := os.Stat(filepath.Join(v1, "memory.limit_in_bytes")); err == nil {
		_, own := memlimit.OwnCgroups("/proc/self/cgroup")
		return newV1(filepath.Join(v1, own, name), max)
	}
	return nil, fmt.Errorf("scale: -memory-max needs cgroup v2 with the memory controller (%s/cgroup.controllers) or a cgroup v1 memory hierarchy (%s/memory), writable: run as root on the host, not in a container", cgroupFS, cgroupFS)
}

func newV2(dir string, max int64) (*memCgroup, error) {
	parent := filepath.Dir(dir)
	if !hasController(filepath.Join(parent, "cgroup.subtree_control"), "memory") {
		if err := writeFile(filepath.Join(parent, "cgroup.subtree_control"), "+memory"); err != nil {
			return nil, fmt.Errorf("scale: -memory-max: enabling the memory controller for %s's children: %w", parent, err)
		}
	}
	c := &memCgroup{dir: dir, max: max, procs: "cgroup.procs", peak: "memory.peak", events: "memory.events"}
	n := strconv.FormatInt(max, 10)
	// No swap, as in a pod: the limit is all the memory the controller has.
	return c, c.create(setting{"memory.max", n, false}, setting{"memory.swap.max", "0", true})
}

func newV1(dir string, max int64) (*memCgroup, error) {
	c := &memCgroup{dir: dir, max: max, procs: "cgroup.procs", peak: "memory.max_usage_in_bytes", events: "memory.oom_control"}
	n := strconv.FormatInt(max, 10)
	// memory.memsw (memory and swap) is there when swap is accounted; it
	// may not be below the memory limit, so it comes second.
	return c, c.create(setting{"memory.limit_in_bytes", n, false}, setting{"memory.memsw.limit_in_bytes", n, true})
}

// setting is a value to write to a cgroup's file; an optional one only
// where the kernel has the file.
type setting struct {
	file, value string
	optional    bool
}

// create makes the cgroup's folder and writes settings in order.
func (c *memCgroup) create(settings ...setting) error {
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return fmt.Errorf("scale: -memory-max: making cgroup %s: %w (cgroups need root)", c.dir, err)
	}
	for _, s := range settings {
		path := filepath.Join(c.dir, s.file)
		if _, err := os.Stat(path); err != nil && s.optional {
			continue
		}
		if err := writeFile(path, s.value); err != nil {
			_ = c.remove()
			return fmt.Errorf("scale: -memory-max: %w", err)
		}
	}
	return nil
}

// wrap runs path with args inside the cgroup: a shell puts itself there,
// then execs the program, so the program's first page is charged to the
// cgroup and it reads its limit from it at start.
func (c *memCgroup) wrap(path string, args []string) (string, []string) {
	return "/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(c.dir, c.procs), path}, args...)
}

// peakMB is the most memory the cgroup was charged, in MB; 0 when the
// kernel does not keep it (v2 before Linux 5.19).
func (c *memCgroup) peakMB() float64 {
	b, err := os.ReadFile(filepath.Join(c.dir, c.peak))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return float64(n) / (1 << 20)
}

// oomKills is how many processes the kernel killed in the cgroup for
// want of memory.
func (c *memCgroup) oomKills() (int, error) {
	f, err := os.Open(filepath.Join(c.dir, c.events))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no oom_kill count in %s", c.events)
}

// explain adds to a run's error that the kernel killed the controller at
// the limit, when it did.
func (c *memCgroup) explain(err error) error {
	if n, kerr := c.oomKills(); kerr == nil && n > 0 {
		return fmt.Errorf("%w\nscale: the controller was killed for want of memory (OOM) in its cgroup of %s (memory.max), its peak %.0f MB", err, mib(c.max), c.peakMB())
	}
	return err
}

// remove deletes the cgroup once its processes have gone; the kernel may
// take a moment after the last one exits.
func (c *memCgroup) remove() error {
	var err error
	for range 50 {
		if err = os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("scale: removing cgroup %s: %w", c.dir, err)
}

// hasController says whether a cgroup.controllers or
// cgroup.subtree_control file lists name.
func hasController(file, name string) bool {
	b, err := os.ReadFile(file)
	return err == nil && slices.Contains(strings.Fields(string(b)), name)
}

func writeFile(path, value string) error {
	return os.WriteFile(path, []byte(value), 0o644)
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }
