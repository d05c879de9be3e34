package controller

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// WatchDir calls changed whenever a file under dir (or a folder added to
// it) changes, until ctx ends. Editors that replace files by renaming are
// covered because the folders, not the files, are watched. Events on
// files the folder source never reads (hidden or not YAML or JSON, as an
// editor's temporary file) are left out.
func WatchDir(ctx context.Context, dir string, changed func(), log *slog.Logger) error {
	return watchDir(ctx, dir, changed, changed, log)
}

// watchDir is WatchDir with the changes told apart: whole calls for a
// change after which the files are whole (a file created, renamed into
// place, removed; a folder or link changed), written for a file written
// in place, which may be read half-written until the writer is done.
func watchDir(ctx context.Context, dir string, whole, written func(), log *slog.Logger) error {
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
			switch eventKind(dir, ev) {
			case eventWhole:
				whole()
			case eventWritten:
				written()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("watching config dir", "err", err)
			whole()
		}
	}
}

type fileEvent int

const (
	eventIgnored fileEvent = iota // nothing the folder source reads changed
	eventWhole                    // the files are whole after it
	eventWritten                  // a file written in place, maybe not yet whole
)

// eventKind tells what an event under dir means for the folder source
// (DirLoader.Load), which reads the YAML and JSON files whose path below
// dir has no hidden name, through links. An event on a regular file it
// does not read, or on a hidden name that is gone, is ignored; a write to
// a file it reads is eventWritten; anything else (a file created, renamed
// or removed, a folder, a link such as the ..data link Kubernetes swaps
// in a ConfigMap volume, a name that is gone) is eventWhole.
func eventKind(dir string, ev fsnotify.Event) fileEvent {
	hidden := false
	if rel, err := filepath.Rel(dir, ev.Name); err == nil {
		for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
			hidden = hidden || (strings.HasPrefix(part, ".") && part != "." && part != "..")
		}
	}
	read := !hidden && configFile(ev.Name)
	st, err := os.Lstat(ev.Name)
	switch {
	case err != nil: // gone: removed or renamed away
		if hidden {
			return eventIgnored
		}
		return eventWhole
	case st.Mode().IsRegular() && !read:
		return eventIgnored
	case st.Mode().IsRegular() && ev.Op == fsnotify.Write:
		return eventWritten
	}
	return eventWhole
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
	return watchDir(ctx, dir, p.Changed, p.changedUnsettled, p.Log)
}
