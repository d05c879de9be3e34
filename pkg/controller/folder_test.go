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
		if err := watchDir(ctx, dir, func() { whole.Add(1) }, func() { written.Add(1) }, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
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
