package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// applied records what a configFile applied, refusing any config with a
// listener named "refused", as the proxy refuses a config it cannot serve.
type applied struct {
	mu    sync.Mutex
	names []string
}

func (a *applied) apply(res config.Resources) error {
	var names []string
	for _, l := range res.Listeners {
		if l.Name == "refused" {
			return errors.New("listener refused: no such codec")
		}
		names = append(names, l.Name)
	}
	a.mu.Lock()
	a.names = append(a.names, strings.Join(names, ","))
	a.mu.Unlock()
	return nil
}

func (a *applied) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.names) == 0 {
		return ""
	}
	return a.names[len(a.names)-1]
}

func (a *applied) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.names)
}

func listenerConfig(name string) string {
	return "listeners:\n- name: " + name + "\n  address:\n    socket_address: {address: 127.0.0.1, port_value: 20880}\n"
}

// syncBuffer is a log sink the watcher's goroutine writes while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// replace writes a file the way editors and Kubernetes do: a new file
// renamed over the old one.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// The static config reloads when the file changes; a file that does not
// parse, or one the proxy refuses, leaves the last good config in force
// and is reported; a rewrite with the same content applies nothing.
func TestConfigFileReloadsOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	if err := os.WriteFile(path, []byte(listenerConfig("first")), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	a := &applied{}
	cf := &configFile{path: path, apply: a.apply, log: slog.New(slog.NewTextHandler(&logs, nil))}
	if _, err := cf.load(); err != nil || a.last() != "first" {
		t.Fatalf("load: %v, applied %q", err, a.last())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := cf.watch(ctx); err != nil {
		t.Fatal(err)
	}

	replace(t, path, listenerConfig("second"))
	testutil.Eventually(t, 5*time.Second, "the changed file to be applied", func() bool { return a.last() == "second" })

	replace(t, path, "listeners: [unclosed")
	testutil.Eventually(t, 5*time.Second, "the bad file to be reported", func() bool { return strings.Contains(logs.String(), "config file refused") })
	replace(t, path, listenerConfig("refused"))
	testutil.Eventually(t, 5*time.Second, "the refused config to be reported", func() bool { return strings.Contains(logs.String(), "no such codec") })
	if a.last() != "second" {
		t.Fatalf("after two bad edits the config in force is %q, want the last good one", a.last())
	}

	replace(t, path, listenerConfig("third"))
	testutil.Eventually(t, 5*time.Second, "the fixed file to be applied", func() bool { return a.last() == "third" })
	// A rewrite with the same content, then a change: once the change is
	// in force, the rewrite's event has been handled (events come in
	// order), and it applied nothing.
	n := a.count()
	replace(t, path, listenerConfig("third"))
	replace(t, path, listenerConfig("fourth"))
	testutil.Eventually(t, 5*time.Second, "the last change to be applied", func() bool { return a.last() == "fourth" })
	if got := a.count() - n; got != 1 {
		t.Fatalf("a rewrite and a change made %d applies, want 1: the same content was applied again", got)
	}
}

// SIGHUP reloads a file whose change no watch reported: here the config
// path is a symbolic link into a folder nobody watches.
func TestConfigFileReloadsOnSIGHUP(t *testing.T) {
	real := filepath.Join(t.TempDir(), "real.yaml")
	if err := os.WriteFile(real, []byte(listenerConfig("first")), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	a := &applied{}
	var logs syncBuffer
	cf := &configFile{path: path, apply: a.apply, log: slog.New(slog.NewTextHandler(&logs, nil))}
	if _, err := cf.load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := cf.watch(ctx); err != nil {
		t.Fatal(err)
	}
	replace(t, real, listenerConfig("second"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "SIGHUP to reload", func() bool { return a.last() == "second" })
	// The reload says why it happened: only SIGHUP could have seen a
	// change in a folder nobody watches.
	if !strings.Contains(logs.String(), `reason=SIGHUP`) || strings.Contains(logs.String(), `reason="file changed"`) {
		t.Fatalf("the reload was not SIGHUP's:\n%s", logs.String())
	}
}
