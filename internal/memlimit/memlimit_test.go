package memlimit

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// tree writes files (path relative to a temporary folder: content) and
// returns the folder.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestContainerReadsTheProcessCgroupsLimit(t *testing.T) {
	const gi = 1 << 30
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"v2, a container's own cgroup mounted at the root", map[string]string{
			"self": "0::/\n", "fs/memory.max": "268435456\n"}, 256 << 20},
		{"v2, no limit", map[string]string{
			"self": "0::/\n", "fs/memory.max": "max\n"}, 0},
		{"v2, a child cgroup on a host", map[string]string{
			"self": "0::/bench/run\n", "fs/bench/run/memory.max": "1073741824\n", "fs/bench/memory.max": "max\n"}, gi},
		{"v2, the parent's limit is lower", map[string]string{
			"self": "0::/pod/ctr\n", "fs/pod/ctr/memory.max": "max\n", "fs/pod/memory.max": "536870912\n"}, 512 << 20},
		{"v2, the cgroup named is not mounted here (host path in a container)", map[string]string{
			"self": "0::/kubepods/pod1/ctr\n", "fs/memory.max": "1073741824\n"}, gi},
		{"v1, a child cgroup on a host", map[string]string{
			"self": "12:pids:/\n4:memory:/session/bench\n0::/\n",
			"fs/memory/session/bench/memory.limit_in_bytes": "167772160\n",
			"fs/memory/session/memory.limit_in_bytes":       "9223372036854771712\n",
			"fs/memory/memory.limit_in_bytes":               "9223372036854771712\n"}, 160 << 20},
		{"v1, no limit", map[string]string{
			"self": "4:memory:/\n", "fs/memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"v1, memory with another controller, mounted at the root", map[string]string{
			"self": "3:memory,hugetlb:/docker/abc\n", "fs/memory/memory.limit_in_bytes": "2147483648\n"}, 2 * gi},
		{"no cgroup file system", map[string]string{"self": "0::/\n"}, 0},
		{"no /proc/self/cgroup, a v2 limit at the root", map[string]string{"fs/memory.max": "1073741824"}, gi},
		{"a path that leaves the mount is not followed", map[string]string{
			"self": "0::/../../outside\n", "outside/memory.max": "1048576\n", "fs/memory.max": "max\n"}, 0},
		{"garbage", map[string]string{"self": "0::/\n", "fs/memory.max": "lots\n"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t, tc.files)
			if got := Container(filepath.Join(root, "fs"), filepath.Join(root, "self")); got != tc.want {
				t.Errorf("Container: %d, want %d", got, tc.want)
			}
		})
	}
}

func TestChoosePrecedence(t *testing.T) {
	const mi = 1 << 20
	unread := func() int64 { t.Error("the container's limit was read though a setting wins"); return 0 }
	for _, tc := range []struct {
		name      string
		env       string
		flag      int64
		container func() int64
		want      Limit
	}{
		{"GOMEMLIMIT wins over the flag", "200MiB", 300 * mi, unread, Limit{Source: FromEnv}},
		{"the flag wins over the container", "", 300 * mi, unread, Limit{Soft: 300 * mi, Source: FromFlag}},
		{"nine tenths of the container's", "", 0, func() int64 { return 1000 * mi }, Limit{Soft: 900 * mi, Source: FromContainer, Container: 1000 * mi}},
		{"none outside a container", "", 0, func() int64 { return 0 }, Limit{Source: None}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := choose(tc.env, tc.flag, tc.container); got != tc.want {
				t.Errorf("choose: %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLogSaysTheLimitAndWhereFrom(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	Limit{Soft: 900 << 20, Source: FromContainer, Container: 1000 << 20}.Log(log)
	Limit{Source: None}.Log(log)
	for _, want := range []string{"limit=900Mi source=container container_limit=1000Mi", "no soft memory limit"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log %q lacks %q", out.String(), want)
		}
	}
}

func TestSetGivesTheCollectorTheFlagsLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	got := Set(3 << 30)
	if got != (Limit{Soft: 3 << 30, Source: FromFlag}) {
		t.Errorf("Set: %+v", got)
	}
	if now := debug.SetMemoryLimit(-1); now != 3<<30 {
		t.Errorf("the collector's limit is %d, want %d", now, 3<<30)
	}
}
