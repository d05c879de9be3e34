package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/fsnotify/fsnotify"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// configFile is the static --config file: it is applied at start and again
// whenever its content changes (a write, an editor's rename, a ConfigMap's
// symlink swap) or the proxy gets SIGHUP, through apply, the same
// Proxy.Apply an xDS update goes through. A file that does not parse, or
// that the proxy refuses, is logged and counted, and the last good config
// stays in force. The admin address is read once, at start.
type configFile struct {
	path  string
	apply func(config.Resources) error
	log   *slog.Logger
	// last is the hash of the content last applied.
	last [sha256.Size]byte
}

// load applies the file at start; an error is fatal there.
func (f *configFile) load() (*config.Bootstrap, error) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	boot, err := config.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	if err := f.apply(boot.Resources); err != nil {
		return nil, err
	}
	f.last = sha256.Sum256(data)
	return boot, nil
}

// reload applies the file again when its content changed since it was
// last applied.
func (f *configFile) reload(why string) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		f.log.Warn("config file not reloaded; the last good config stays", "file", f.path, "reason", why, "err", err)
		return
	}
	sum := sha256.Sum256(data)
	if bytes.Equal(sum[:], f.last[:]) {
		return
	}
	boot, err := config.Parse(data)
	if err == nil {
		err = f.apply(boot.Resources)
	}
	if err != nil {
		f.log.Error("config file refused; the last good config stays", "file", f.path, "reason", why, "err", err)
		f.last = sum // not again until it changes
		return
	}
	f.last = sum
	f.log.Info("config file reloaded", "file", f.path, "reason", why)
}

// watch reloads on changes and SIGHUP until ctx ends. The folder is
// watched, not the file: editors and Kubernetes replace files by renaming.
func (f *configFile) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", f.path, err)
	}
	if err := w.Add(filepath.Dir(f.path)); err != nil {
		w.Close()
		return fmt.Errorf("watch %s: %w", f.path, err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer w.Close()
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				f.reload("SIGHUP")
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				f.reload("file changed")
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				f.log.Warn("watching the config file", "file", f.path, "err", err)
			}
		}
	}()
	return nil
}
