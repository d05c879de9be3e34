// Package memlimit gives Go's collector a soft memory limit from the
// container's, for rosetta-proxy and rosetta-controller alike. Left at
// GOGC alone, the collector lets the heap grow to twice (the proxy's
// --gc-percent 200: three times) what is live before it collects, so a
// burst of work (the controller's initial sync, a flood of large frames
// at the proxy) can take a pod past its memory limit, where it is killed,
// while what is live fits well within it. Nine tenths of the limit leaves
// the rest for what the runtime does not count: stacks, the binary, page
// cache charged to the container.
package memlimit

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/rosetta-mesh/rosetta/internal/cli"
)

// Where the limit came from.
const (
	FromEnv       = "GOMEMLIMIT"
	FromFlag      = "--memory-limit"
	FromContainer = "container"
	None          = "none"
)

// Limit is the soft memory limit a process runs with.
type Limit struct {
	// Soft is the limit in bytes; 0 for none.
	Soft int64
	// Source is FromEnv, FromFlag, FromContainer or None.
	Source string
	// Container is the container's memory limit, 0 for none, read only
	// when the limit comes from it.
	Container int64
}

// Register adds --memory-limit to fs; its value goes to *bytes.
func Register(fs *pflag.FlagSet, bytes *int64) {
	fs.Var((*cli.Bytes)(bytes), "memory-limit", "soft memory limit for Go's collector, as GOMEMLIMIT (Ki, Mi, Gi suffixes; default: 90% of the container's memory limit, none outside a container; GOMEMLIMIT in the environment wins)")
}

// Set gives the collector its soft limit: GOMEMLIMIT from the environment
// when set (the runtime has applied it), else flag when positive, else
// nine tenths of the container's memory limit when there is one. It
// returns the limit in force.
func Set(flag int64) Limit {
	l := choose(os.Getenv("GOMEMLIMIT"), flag, func() int64 { return Container(cgroupRoot, selfCgroup) })
	switch l.Source {
	case FromEnv:
		l.Soft = debug.SetMemoryLimit(-1) // -1 reads it
	case FromFlag, FromContainer:
		debug.SetMemoryLimit(l.Soft)
	}
	return l
}

// choose is Set's decision; container is read only when it decides.
func choose(env string, flag int64, container func() int64) Limit {
	switch {
	case env != "":
		return Limit{Source: FromEnv}
	case flag > 0:
		return Limit{Soft: flag, Source: FromFlag}
	}
	c := container()
	if c <= 0 {
		return Limit{Source: None}
	}
	return Limit{Soft: c / 10 * 9, Source: FromContainer, Container: c}
}

// Log writes the limit at info level, so that a pod's log says what its
// collector aims at.
func (l Limit) Log(log *slog.Logger) {
	if l.Source == None {
		log.Info("no soft memory limit: no GOMEMLIMIT, --memory-limit or container memory limit")
		return
	}
	attrs := []any{"limit", bytesText(l.Soft), "source", l.Source}
	if l.Container > 0 {
		attrs = append(attrs, "container_limit", bytesText(l.Container))
	}
	log.Info("soft memory limit", attrs...)
}

func bytesText(n int64) string {
	b := cli.Bytes(n)
	return b.String()
}

// Where Container looks: the cgroup file systems and the process's own
// cgroups.
const (
	cgroupRoot = "/sys/fs/cgroup"
	selfCgroup = "/proc/self/cgroup"
)

// Container is the memory limit of the cgroup this process runs in, the
// least of its own and its ancestors' (cgroup v2 memory.max, else v1
// memory.limit_in_bytes under root/memory); 0 when there is none. self
// is /proc/self/cgroup, which names the process's cgroup: a process on a
// host, or in a child cgroup of a container, finds it under root; a
// container with its cgroup mounted at root (a cgroup namespace, or a
// bind mount of it) finds its own limit at root itself.
func Container(root, self string) int64 {
	v2, v1 := OwnCgroups(self)
	if n, ok := lowestLimit(root, v2, "memory.max"); ok {
		return n
	}
	n, _ := lowestLimit(filepath.Join(root, "memory"), v1, "memory.limit_in_bytes")
	return n
}

// OwnCgroups reads the process's cgroup v2 path and its cgroup v1 memory
// path from a /proc/self/cgroup ("0::/a/b", "4:memory:/a/b"); "/" for
// one not listed.
func OwnCgroups(self string) (v2, v1 string) {
	v2, v1 = "/", "/"
	b, err := os.ReadFile(self)
	if err != nil {
		return v2, v1
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			v2 = f[2]
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "memory" {
				v1 = f[2]
			}
		}
	}
	return v2, v1
}

// lowestLimit reads file in the cgroup at mount/rel (at mount when that
// folder is not there) and in each of its ancestors up to mount, and
// returns the least limit; ok when at least one file was read, so that
// an unlimited cgroup ("max") is told apart from a cgroup file system
// that is not there.
func lowestLimit(mount, rel, file string) (limit int64, ok bool) {
	dir := filepath.Join(mount, rel)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() || !within(dir, mount) {
		dir = mount
	}
	for {
		if n, read := readLimit(filepath.Join(dir, file)); read {
			ok = true
			if n > 0 && (limit == 0 || n < limit) {
				limit = n
			}
		}
		if !within(filepath.Dir(dir), mount) {
			return limit, ok
		}
		dir = filepath.Dir(dir)
	}
}

// within says whether dir is mount or under it.
func within(dir, mount string) bool {
	return dir == mount || strings.HasPrefix(dir, mount+string(filepath.Separator))
}

// unlimited is where a cgroup v1 limit means none: v1 writes "no limit"
// as the largest page-aligned int64 (9223372036854771712).
const unlimited = 1 << 62

// readLimit reads a memory limit file: bytes, or "max" (v2) or a huge
// number (v1) for none, which is 0; read is false when the file cannot
// be read or parsed.
func readLimit(path string) (n int64, read bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, true
	}
	n, err = strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	if n <= 0 || n >= unlimited {
		return 0, true
	}
	return n, true
}
