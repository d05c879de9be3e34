package controller

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// WatchDir calls changed whenever a file under dir (or a folder added to
// it) changes, until ctx ends. Editors that replace files by renaming are
// covered because the folders, not the files, are watched.
func WatchDir(ctx context.Context, dir string, changed func(), log *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("controller: watch %s: %w", dir, err)
	}
	defer w.Close()
	add := func(root string) error {
		return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return w.Add(path)
			}
			return nil
		})
	}
	if err := add(dir); err != nil {
		return fmt.Errorf("controller: watch %s: %w", dir, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op&fsnotify.Create != 0 {
				// A new folder is watched too.
				if err := add(ev.Name); err != nil {
					log.Debug("watch new path", "path", ev.Name, "err", err)
				}
			}
			changed()
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("watching config dir", "err", err)
			changed()
		}
	}
}

// RunDir is the controller's folder mode: it sets p.Inputs to read the
// YAML files under dir, pushes once, then again after every change under
// dir, until ctx ends. A folder that does not load at the start is an
// error at once; later read errors keep the last config in force.
func (p *Pipeline) RunDir(ctx context.Context, dir string) error {
	loader := &DirLoader{Dir: dir}
	if _, err := loader.Load(); err != nil {
		return err
	}
	p.Inputs = loader.Load
	p.init()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	p.Changed()
	return WatchDir(ctx, dir, p.Changed, p.Log)
}
