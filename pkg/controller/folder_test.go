package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// TestEventKind: what an event under the folder means for the folder
// source, for each kind of name it may be on.
func TestEventKind(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"sub", ".hidden", "..2026_01_01"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"mr.yaml", "sub/svc.yml", "a.json", ".mr.yaml.tmp", ".mr.yaml", "notes.txt", ".hidden/x.yaml", "..2026_01_01/cm.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("..2026_01_01", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/cm.yaml", filepath.Join(dir, "cm.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		op   fsnotify.Op
		want fileEvent
	}{
		{"mr.yaml", fsnotify.Create, eventWhole}, // renamed into place, or new
		{"mr.yaml", fsnotify.Write, eventWritten},
		{"mr.yaml", fsnotify.Chmod, eventWhole},
		{"sub/svc.yml", fsnotify.Write, eventWritten},
		{"a.json", fsnotify.Write, eventWritten},
		{"gone.yaml", fsnotify.Remove, eventWhole},
		{"gone-folder", fsnotify.Rename, eventWhole}, // may have been a folder of config
		{"sub", fsnotify.Create, eventWhole},
		{".mr.yaml.tmp", fsnotify.Create, eventIgnored}, // an editor's temporary file
		{".mr.yaml.tmp", fsnotify.Write, eventIgnored},
		{".gone.tmp", fsnotify.Rename, eventIgnored}, // renamed into place: the Create says so
		{".mr.yaml", fsnotify.Write, eventIgnored},
		{"notes.txt", fsnotify.Write, eventIgnored},
		{".hidden/x.yaml", fsnotify.Write, eventIgnored},
		// A ConfigMap volume: the files are links through ..data, which
		// the kubelet swaps.
		{"..data", fsnotify.Create, eventWhole},
		{"cm.yaml", fsnotify.Write, eventWhole},
		{"..2026_01_01/cm.yaml", fsnotify.Create, eventIgnored},
		{"..data_tmp", fsnotify.Rename, eventIgnored},
	} {
		ev := fsnotify.Event{Name: filepath.Join(dir, tc.name), Op: tc.op}
		if got := eventKind(dir, ev); got != tc.want {
			t.Errorf("%s on %s: kind %d, want %d", tc.op, tc.name, got, tc.want)
		}
	}
}

// TestWatchDirTellsWritesApart: a file written to a hidden temporary name
// and renamed into place, as editors save, is a whole change, and the
// temporary file's write is not seen; a file written in place is a
// written change.
func TestWatchDirTellsWritesApart(t *testing.T) {
	dir := t.TempDir()
	appended := filepath.Join(dir, "appended.yaml")
	if err := os.WriteFile(appended, []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var whole, written atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := watchDir(ctx, dir, func(string) { whole.Add(1) }, func(string) { written.Add(1) }, nil, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	// The watch is in place once a folder made now is seen.
	probes := 0
	testutil.Eventually(t, 10*time.Second, "the watch to start", func() bool {
		probes++
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("probe-%d", probes)), 0o755); err != nil {
			t.Fatal(err)
		}
		return whole.Load() > 0
	})
	before := whole.Load()

	tmp := filepath.Join(dir, ".mr.yaml.tmp")
	if err := os.WriteFile(tmp, []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "mr.yaml")); err != nil {
		t.Fatal(err)
	}
	// One write in place, after: once it is seen, so are the rename's
	// events (inotify keeps their order).
	f, err := os.OpenFile(appended, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("b: 2\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the write in place to be seen", func() bool { return written.Load() > 0 })
	if w := written.Load(); w != 1 {
		t.Errorf("%d written changes, want 1: the temporary file's write was seen", w)
	}
	if whole.Load() == before {
		t.Error("the rename into place was not seen as a whole change")
	}
}

// TestWatchedLoaderReadsTouchedFiles: once watched, a Load reads the files
// the watcher named and no others (a change it was not told of stays
// unseen: that is the saving), walks the folder when told of a change it
// cannot place (a folder, or none named), and drops a file that is gone.
func TestWatchedLoaderReadsTouchedFiles(t *testing.T) {
	dir := t.TempDir()
	put := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(filepath.Dir(path), ".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	svc := func(name string, port int) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: a}\nspec: {ports: [{name: tcp-dubbo, port: %d}]}\n", name, port)
	}
	ports := func(in *Inputs) map[string]int32 {
		out := map[string]int32{}
		for _, s := range in.Services {
			out[s.Name] = s.Spec.Ports[0].Port
		}
		return out
	}
	load := func(l *DirLoader, want map[string]int32, what string) {
		t.Helper()
		in, err := l.Load()
		if err != nil {
			t.Fatal(err)
		}
		if got := ports(in); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: services %v, want %v", what, got, want)
		}
	}
	a, b := put("a.yaml", svc("a", 1)), put("b.yaml", svc("b", 1))
	l := &DirLoader{Dir: dir}
	load(l, map[string]int32{"a": 1, "b": 1}, "first load")
	l.watched()
	put("a.yaml", svc("a", 2))
	load(l, map[string]int32{"a": 2, "b": 1}, "the first Load once watched walks the folder")

	put("a.yaml", svc("a", 3))
	put("b.yaml", svc("b", 3))
	l.touch(a)
	load(l, map[string]int32{"a": 3, "b": 1}, "a touched, b not")
	l.touch(b)
	load(l, map[string]int32{"a": 3, "b": 3}, "b touched")

	c := put("c.yaml", svc("c", 1))
	l.touch(c)
	load(l, map[string]int32{"a": 3, "b": 3, "c": 1}, "a new file")
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	l.touch(b)
	load(l, map[string]int32{"a": 3, "c": 1}, "a removed file")

	put("sub/d.yaml", svc("d", 1))
	put(".hidden.yaml", svc("h", 1))
	l.touch(filepath.Join(dir, ".hidden.yaml"))
	load(l, map[string]int32{"a": 3, "c": 1}, "a hidden file")
	l.touch(filepath.Join(dir, "sub"))
	load(l, map[string]int32{"a": 3, "c": 1, "d": 1}, "a new folder")
	put("a.yaml", svc("a", 4))
	l.touch("")
	load(l, map[string]int32{"a": 4, "c": 1, "d": 1}, "a change the watcher could not name")
	if err := os.RemoveAll(filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
	l.touch(filepath.Join(dir, "sub"))
	load(l, map[string]int32{"a": 4, "c": 1}, "a removed folder")
}

// TestRunDirSeesEdits: the folder mode, with its watcher, pushes each
// edit of a file renamed into place, written in place or added.
func TestRunDirSeesEdits(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, inPlace bool) {
		t.Helper()
		path := filepath.Join(dir, name)
		if inPlace {
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	svc := func(name string, port int) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: a}\nspec: {ports: [{name: tcp-dubbo, port: %d}]}\n", name, port)
	}
	write("a.yaml", svc("a", 1), false)
	var mu sync.Mutex
	var last *Index
	p := &Pipeline{Builder: &Builder{Options: Options{Resolve: fakeResolver}}, MinDelay: time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Push: func(ix *Index, _ time.Time) {
			mu.Lock()
			last = ix
			mu.Unlock()
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.RunDir(ctx, dir) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	wait := func(host string, port uint32) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%s on port %d", host, port), func() bool {
			mu.Lock()
			defer mu.Unlock()
			if last == nil {
				return false
			}
			s := last.Service(host + ".a.svc.cluster.local")
			return s != nil && s.Ports[0].Number == port
		})
	}
	wait("a", 1)
	write("a.yaml", svc("a", 2), false)
	wait("a", 2)
	write("a.yaml", svc("a", 3), true)
	wait("a", 3)
	write("b.yaml", svc("b", 1), false)
	wait("b", 1)
}
