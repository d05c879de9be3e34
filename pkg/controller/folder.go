package controller

import (
	"context"
	"errors"
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
	return watchDir(ctx, dir, func(string) { changed() }, func(string) { changed() }, nil, log)
}

// watchDir is WatchDir with the changes told apart and named: whole is
// called for a change after which the files are whole (a file created,
// renamed into place, removed; a folder or link changed), written for a
// file written in place, which may be read half-written until the writer
// is done; each with the path the change is on, or "" when the watcher
// cannot say (an error, as an overflow of its queue). ready, when not
// nil, is called once the folder is watched: every change from then on
// is reported.
func watchDir(ctx context.Context, dir string, whole, written func(path string), ready func(), log *slog.Logger) error {
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
	if ready != nil {
		ready()
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
				whole(ev.Name)
			case eventWritten:
				written(ev.Name)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("watching config dir", "err", err)
			whole("")
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
	hidden := hiddenBelow(dir, ev.Name)
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

// hiddenBelow reports whether a name of path below dir (dir's own aside)
// is hidden: the folder source does not read it.
func hiddenBelow(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		return false
	}
	for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
		if strings.HasPrefix(part, ".") && part != "." && part != ".." {
			return true
		}
	}
	return false
}

// RunDir is the controller's folder mode: it sets p.Inputs to read the
// YAML files under dir, pushes once the folder is watched, then again
// after every change under dir, until ctx ends. A folder that does not
// load at the start is an error at once; later read errors keep the last
// config in force. The watcher names the files that change, so a read
// after an edit looks at those files only (DirLoader.touch).
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
	whole := func(path string) { loader.touch(path); p.Changed() }
	written := func(path string) { loader.touch(path); p.changedUnsettled() }
	ready := func() { loader.watched(); p.Changed() }
	return watchDir(ctx, dir, whole, written, ready, p.Log)
}

// watched tells the loader that every change under its folder from now on
// is reported to touch: from the next Load on (which walks the folder, as
// changes made before the watch began were not reported), a Load reads
// only the paths touched since the last one.
func (l *DirLoader) watched() {
	l.pending.Lock()
	defer l.pending.Unlock()
	l.watching, l.rescan = true, true
}

// touch records that path changed ("": something did, the watcher cannot
// say what: the next Load walks the folder).
func (l *DirLoader) touch(path string) {
	l.pending.Lock()
	defer l.pending.Unlock()
	if path == "" {
		l.rescan = true
		return
	}
	if l.touched == nil {
		l.touched = map[string]bool{}
	}
	l.touched[filepath.Clean(path)] = true
}

// takeTouched returns what touch recorded since the last call, and
// whether the folder must be walked (not watched, or a change that named
// no file).
func (l *DirLoader) takeTouched() (paths map[string]bool, walk bool) {
	l.pending.Lock()
	defer l.pending.Unlock()
	paths, walk = l.touched, !l.watching || l.rescan
	l.touched, l.rescan = nil, false
	return paths, walk
}

// untake puts back what a failed Load took, for the next one.
func (l *DirLoader) untake(paths map[string]bool, walk bool) {
	l.pending.Lock()
	defer l.pending.Unlock()
	l.rescan = l.rescan || walk
	for p := range paths {
		if l.touched == nil {
			l.touched = map[string]bool{}
		}
		l.touched[p] = true
	}
}

// readTouched brings the files of the last Load up to date with the
// touched paths: a regular file the folder source reads is parsed again
// when its stamp changed (a new one is added), a file that is gone is
// dropped. It returns false when a path needs the folder walked: a
// folder, a link, or a gone name that was no file (maybe a folder). Callers
// hold l.mu.
func (l *DirLoader) readTouched(paths map[string]bool) (bool, error) {
	added := false
	defer func() {
		if added {
			l.names = sortedKeys(l.files)
		}
	}()
	for path := range paths {
		st, err := os.Lstat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if _, known := l.files[path]; !known {
				return false, nil
			}
			delete(l.files, path)
			added = true
		case err != nil:
			return false, nil // the walk reports it
		case !st.Mode().IsRegular():
			return false, nil
		case hiddenBelow(l.Dir, path) || !configFile(path):
		default:
			pf, known := l.files[path]
			stamp := stampOf(st)
			if known && pf.stamp == stamp {
				continue
			}
			data, err := readCapped(path)
			if err != nil {
				return false, err
			}
			l.files[path] = parseFile(path, stamp, data, pf)
			added = added || !known
		}
	}
	return true, nil
}

// inputs are the objects of the files of the last Load, in name order.
// Callers hold l.mu.
func (l *DirLoader) inputs() *Inputs {
	in := &Inputs{}
	for _, f := range l.names {
		pf, ok := l.files[f]
		if !ok {
			continue
		}
		in.append(pf.in)
		in.Unused = append(in.Unused, pf.unused...)
	}
	return in
}
