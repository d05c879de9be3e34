package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// options are the harness's settings; main.go has them as flags.
type options struct {
	services, proxies, namespaces int
	// xdsMode is how the proxies subscribe: "delta" (rosetta-proxy's
	// default) or "sotw" (state of the world).
	xdsMode string
	// edits MetaRouter edits one at a time, gap apart once the last
	// proxy has ACKed the one before (so each comes after a quiet
	// period); then burst edits in a tight loop (0: none).
	edits int
	gap   time.Duration
	burst int
	// controller is the rosetta-controller binary; "" builds this
	// module's. controllerArgs are added to its command line.
	controller     string
	controllerArgs []string
	// dir is the work folder (config, binary, controller log); "" makes
	// a temporary one, removed at the end unless keep.
	dir  string
	keep bool
	// timeout bounds every wait (start, sync, each edit).
	timeout time.Duration
	// profile, when set, is where a CPU profile of the controller taken
	// during the edits is written (profileFor long).
	profile    string
	profileFor time.Duration
	// heapProfile, when set, is where a heap profile of the controller
	// taken after the edits is written.
	heapProfile string
	// syncProfile, when set, is where a CPU profile of the controller
	// taken from the proxies' first connection (profileFor long) is
	// written.
	syncProfile string
	// lazy runs the proxies in lazy mode, each having called lazyCalls
	// services (lazy.go).
	lazy      bool
	lazyCalls int
	// memoryMax, when positive, runs the controller in a memory cgroup
	// with this limit (cgroup.go), as in a container.
	memoryMax int64
	progress  io.Writer
}

// result is what a run measured.
type result struct {
	opts options
	// started runs from the controller's start to its first push
	// (/readyz); synced from the proxies' start to the last one holding
	// its whole config. configBytes is the median a proxy received then.
	started, synced time.Duration
	configBytes     int
	// latency is, per edit, the time from the rename of the MetaRouter's
	// file to the last ACK of it among the proxies of its namespace.
	latency []time.Duration
	// receivers is the number of proxies per edit; responses the
	// responses each of them got per edit, and stray the responses, all
	// edits together, of proxies that should have got none.
	receivers float64
	responses float64
	stray     int
	// resources and bytes are what each receiving proxy got per edit:
	// resources (a delta response's changed ones, a state-of-the-world
	// response's whole type) and their serialized size.
	resources, bytes float64
	// cpuPerEdit, pushesPerEdit and generationsPerEdit are the
	// controller's CPU time, pushes and scope generations over the edits,
	// per edit.
	cpuPerEdit         time.Duration
	pushesPerEdit      float64
	generationsPerEdit float64
	// rssMean and rssMax are sampled while serving edits; rssPeak is the
	// peak of the whole run (VmHWM), MB.
	rssMean, rssMax, rssPeak float64
	burst                    *burstResult
	// memory is the memory per connected proxy (memory.go); nil when
	// there are too few proxies to measure it.
	memory *memoryResult
	// cgroupPeak is the most the controller's cgroup was charged, MB (0:
	// not known), and oomKills the processes the kernel killed in it;
	// with -memory-max.
	cgroupPeak float64
	oomKills   int
}

type burstResult struct {
	edits int
	// pushes is what the controller made of the burst.
	pushes int
	// responses per proxy: mean and largest.
	responsesMean float64
	responsesMax  int
	// took runs from the first write to the last ACK of the final state;
	// settled from the last write to that ACK.
	took, settled time.Duration
	cpu           time.Duration
}

func (o *options) logf(format string, args ...any) {
	if o.progress != nil {
		fmt.Fprintf(o.progress, format+"\n", args...)
	}
}

// run generates the mesh, starts the controller on it (in a memory
// cgroup with -memory-max), connects the proxies and measures.
func run(ctx context.Context, o options) (*result, error) {
	if o.memoryMax <= 0 {
		return measure(ctx, o, nil)
	}
	cg, err := newMemCgroup(o.memoryMax)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := cg.remove(); err != nil {
			o.logf("%v", err)
		}
	}()
	o.logf("the controller runs in cgroup %s, memory limit %s", cg.dir, mib(o.memoryMax))
	res, err := measure(ctx, o, cg)
	if err != nil {
		return nil, cg.explain(err)
	}
	// The controller has stopped; the cgroup keeps its counts until it is
	// removed.
	res.cgroupPeak = cg.peakMB()
	if res.oomKills, err = cg.oomKills(); err != nil {
		return nil, fmt.Errorf("scale: cgroup: %w", err)
	}
	return res, nil
}

// measure is run with the controller in cg (nil: where the harness runs).
func measure(ctx context.Context, o options, cg *memCgroup) (_ *result, err error) {
	m := mesh{services: o.services, namespaces: o.namespaces}
	if err := m.check(); err != nil {
		return nil, err
	}
	if o.proxies < 1 || o.edits < 1 {
		return nil, errors.New("scale: want at least one proxy and one edit")
	}
	if o.lazy && (o.xdsMode != "delta" || o.lazyCalls < 0) {
		return nil, errors.New("scale: -lazy needs -xds-mode delta and -lazy-calls of 0 or more")
	}
	if o.xdsMode != "delta" && o.xdsMode != "sotw" {
		return nil, fmt.Errorf("scale: xDS mode %q: want delta or sotw", o.xdsMode)
	}
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "rosetta-scale-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	} else {
		o.logf("work folder %s", dir)
	}
	cfg := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		return nil, err
	}
	o.logf("writing %d services in %d namespaces", o.services, o.namespaces)
	if err := m.write(cfg); err != nil {
		return nil, err
	}
	bin := o.controller
	if bin == "" {
		bin = filepath.Join(dir, "rosetta-controller")
		o.logf("building %s", bin)
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/rosetta-mesh/rosetta/cmd/rosetta-controller").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("scale: build rosetta-controller: %w\n%s", err, out)
		}
	}

	res := &result{opts: o}
	args := append([]string{"--config-dir", cfg, "--xds-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--debug-address", "127.0.0.1:0", "--log-level", "info"}, o.controllerArgs...)
	if o.lazy {
		args = append(args, "--lazy-fallback", lazyFallback)
		o.burst = 0 // its check of the final state assumes every proxy of a namespace
		res.opts = o
	}
	path := bin
	if cg != nil {
		path, args = cg.wrap(bin, args)
	}
	start := time.Now()
	ctrl, err := testutil.Start(testutil.Command{Name: "rosetta-controller", Path: path, Args: args, Log: filepath.Join(dir, "controller.log")})
	if err != nil {
		return nil, err
	}
	defer ctrl.Stop(10 * time.Second)
	// A controller that exits (the kernel killed it at its memory limit)
	// ends every wait at once, and the error says so.
	ctx, exited := context.WithCancelCause(ctx)
	defer exited(nil)
	go func() {
		how := "cleanly"
		if err := ctrl.ExitErr(); err != nil {
			how = err.Error()
		}
		exited(fmt.Errorf("scale: the controller exited (%s)", how))
	}()
	defer func() {
		if c := context.Cause(ctx); err != nil && c != nil && !errors.Is(err, c) {
			err = fmt.Errorf("%w\n%w", err, c)
		}
	}()
	fail := func(err error) (*result, error) {
		return nil, fmt.Errorf("%w\ncontroller log (%s):\n%s", err, ctrl.Log, ctrl.LogTail(2000))
	}
	xdsAddr, err := ctrl.LoggedAddr(o.timeout, "serving", "xds")
	if err != nil {
		return nil, err
	}
	httpAddr, err := ctrl.LoggedAddr(o.timeout, "serving", "http")
	if err != nil {
		return nil, err
	}
	debugAddr, err := ctrl.LoggedAddr(o.timeout, "serving", "debug")
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, ctrl, "http://"+httpAddr+"/readyz", o.timeout); err != nil {
		return fail(err)
	}
	res.started = time.Since(start)
	o.logf("controller ready after %v", res.started.Round(time.Millisecond))
	pid := ctrl.Pid()
	samp := startSampler(pid, 100*time.Millisecond)
	defer samp.close()
	samp.setPhase("sync")

	// The proxies.
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	updated := make(chan struct{}, 1)
	proxies := make([]*proxy, o.proxies)
	if o.syncProfile != "" {
		go profile(debugAddr, o.syncProfile, o.profileFor, &o)
	}
	connect := time.Now()
	for i := range proxies {
		p := newProxy(i, i%o.namespaces, o.xdsMode == "delta")
		o.lazyLearn(p, m)
		proxies[i] = p
		var cctx context.Context
		cctx, p.stop = context.WithCancel(pctx)
		wg.Add(1)
		go func() { defer wg.Done(); p.run(cctx, xdsAddr, updated) }()
	}
	err = waitFor(ctx, updated, o.timeout, "every proxy to hold its whole config", func() (bool, error) {
		for _, p := range proxies {
			if ok, err := o.isSynced(p, m); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return fail(err)
	}
	res.synced = time.Since(connect)
	var sizes []int
	for _, p := range proxies {
		sizes = append(sizes, p.counts().bytes)
	}
	sort.Ints(sizes)
	res.configBytes = sizes[len(sizes)/2]
	o.logf("%d proxies synced after %v", o.proxies, res.synced.Round(time.Millisecond))

	// One edit at a time.
	samp.setPhase("edits")
	if o.profile != "" {
		go profile(debugAddr, o.profile, o.profileFor, &o)
	}
	cpu0, err := cpuTime(pid)
	if err != nil {
		return fail(err)
	}
	pushes0, err := pushCount("http://" + httpAddr + "/metrics")
	if err != nil {
		return fail(err)
	}
	gens0, err := generationCount("http://" + httpAddr + "/metrics")
	if err != nil {
		return fail(err)
	}
	receivers, responses, resources, bytes := 0, 0, 0, 0
	for k := 1; k <= o.edits; k++ {
		svc := (k * 7919) % o.services
		route, method := m.routeName(svc), fmt.Sprintf("e%d", k)
		before := allCounts(proxies)
		tmp, err := writeTemp(m.routerFile(cfg, svc), m.routerYAML(svc, method))
		if err != nil {
			return fail(err)
		}
		at := time.Now()
		if err := os.Rename(tmp, m.routerFile(cfg, svc)); err != nil {
			return fail(err)
		}
		var last time.Time
		err = waitFor(ctx, updated, o.timeout, fmt.Sprintf("edit %d (%s) to reach its proxies", k, route), func() (bool, error) {
			last = at
			for _, p := range proxies {
				if !o.receives(p, svc) {
					continue
				}
				ok, when, err := p.has(route, method)
				if !ok || err != nil {
					return false, err
				}
				if when.After(last) {
					last = when
				}
			}
			return true, nil
		})
		if err != nil {
			return fail(err)
		}
		if o.anyReceives(proxies, svc) {
			res.latency = append(res.latency, last.Sub(at))
		}
		if err := sleep(ctx, o.gap); err != nil {
			return nil, err
		}
		for i, p := range proxies {
			got := p.counts().total() - before[i].total()
			if o.receives(p, svc) {
				receivers++
				responses += got
				resources += p.counts().resources - before[i].resources
				bytes += p.counts().bytes - before[i].bytes
			} else {
				res.stray += got
			}
		}
	}
	cpu1, err := cpuTime(pid)
	if err != nil {
		return fail(err)
	}
	pushes1, err := pushCount("http://" + httpAddr + "/metrics")
	if err != nil {
		return fail(err)
	}
	gens1, err := generationCount("http://" + httpAddr + "/metrics")
	if err != nil {
		return fail(err)
	}
	res.cpuPerEdit = (cpu1 - cpu0) / time.Duration(o.edits)
	res.pushesPerEdit = float64(pushes1-pushes0) / float64(o.edits)
	res.generationsPerEdit = float64(gens1-gens0) / float64(o.edits)
	res.receivers = float64(receivers) / float64(o.edits)
	res.responses = float64(responses) / float64(receivers)
	res.resources = float64(resources) / float64(receivers)
	res.bytes = float64(bytes) / float64(receivers)
	res.rssMean, res.rssMax = samp.stats("edits")
	o.logf("%d edits done", o.edits)
	if o.heapProfile != "" {
		if err := fetchTo(fmt.Sprintf("http://%s/debug/pprof/heap", debugAddr), o.heapProfile, time.Minute); err != nil {
			o.logf("heap profile: %v", err)
		}
	}

	if o.burst > 0 {
		samp.setPhase("burst")
		b, err := runBurst(ctx, o, m, cfg, proxies, updated, pid, "http://"+httpAddr+"/metrics")
		if err != nil {
			return fail(err)
		}
		res.burst = b
	}
	if _, peak, err := memory(pid); err == nil {
		res.rssPeak = peak
	}
	res.memory, err = measureMemoryPerProxy(ctx, o, debugAddr, "http://"+httpAddr+"/metrics", proxies)
	if err != nil {
		return fail(err)
	}
	return res, nil
}

// burstSettle is how long after a burst's last ACK its pushes are
// counted: longer than the default --debounce-max, so that a push the
// burst still owes is counted too.
const burstSettle = 1500 * time.Millisecond

// runBurst makes o.burst edits of distinct MetaRouters (as far as there
// are services) in a tight loop, and measures how many pushes they make
// and how long until every proxy holds the final state.
func runBurst(ctx context.Context, o options, m mesh, cfg string, proxies []*proxy, updated chan struct{}, pid int, metricsURL string) (*burstResult, error) {
	b := &burstResult{edits: o.burst}
	pushes0, err := pushCount(metricsURL)
	if err != nil {
		return nil, err
	}
	cpu0, err := cpuTime(pid)
	if err != nil {
		return nil, err
	}
	before := allCounts(proxies)
	final := map[int]string{}
	start := time.Now()
	for j := 0; j < o.burst; j++ {
		svc := (j*104729 + 1) % o.services
		method := fmt.Sprintf("b%d", j)
		if err := writeAtomic(m.routerFile(cfg, svc), m.routerYAML(svc, method)); err != nil {
			return nil, err
		}
		final[svc] = method
	}
	lastWrite := time.Now()
	var last time.Time
	err = waitFor(ctx, updated, o.timeout, fmt.Sprintf("a burst of %d edits to reach every proxy", o.burst), func() (bool, error) {
		last = lastWrite
		for _, p := range proxies {
			for svc, method := range final {
				if svc%o.namespaces != p.ns {
					continue
				}
				ok, when, err := p.has(m.routeName(svc), method)
				if !ok || err != nil {
					return false, err
				}
				if when.After(last) {
					last = when
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	b.took, b.settled = last.Sub(start), last.Sub(lastWrite)
	if err := sleep(ctx, burstSettle); err != nil {
		return nil, err
	}
	pushes1, err := pushCount(metricsURL)
	if err != nil {
		return nil, err
	}
	cpu1, err := cpuTime(pid)
	if err != nil {
		return nil, err
	}
	b.pushes, b.cpu = pushes1-pushes0, cpu1-cpu0
	sum := 0
	for i, p := range proxies {
		got := p.counts().total() - before[i].total()
		sum += got
		b.responsesMax = max(b.responsesMax, got)
	}
	b.responsesMean = float64(sum) / float64(len(proxies))
	o.logf("burst of %d edits: %d pushes", o.burst, b.pushes)
	return b, nil
}

func (c counts) total() int {
	n := 0
	for _, r := range c.responses {
		n += r
	}
	return n
}

func allCounts(proxies []*proxy) []counts {
	out := make([]counts, len(proxies))
	for i, p := range proxies {
		out[i] = p.counts()
	}
	return out
}

// waitFor checks cond after every proxy update (and every second) until
// it holds, returning an error naming what once within has passed or
// when cond fails.
func waitFor(ctx context.Context, updated <-chan struct{}, within time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("scale: waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-deadline.C:
			return fmt.Errorf("scale: waiting for %s: not done after %v", what, within)
		case <-updated:
		case <-tick.C:
		}
	}
}

// waitReady polls url every 10 ms until it answers 200.
func waitReady(ctx context.Context, ctrl *testutil.Process, url string, within time.Duration) error {
	ready := testutil.HTTPOK(url)
	deadline := time.Now().Add(within)
	for {
		ok, err := ready()
		if ok {
			return nil
		}
		if !ctrl.Running() {
			return errors.New("scale: the controller exited")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scale: controller not ready after %v: %w", within, err)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// profile writes a CPU profile of the controller, taken over d.
func profile(debugAddr, file string, d time.Duration, o *options) {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", debugAddr, int(d.Seconds()))
	if err := fetchTo(url, file, d+30*time.Second); err != nil {
		o.logf("profile: %v", err)
	}
}

// fetchTo writes what a GET of url answers to file.
func fetchTo(url, file string, timeout time.Duration) error {
	resp, err := (&http.Client{Timeout: timeout}).Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// percentile is the nearest-rank p-th percentile of sorted xs.
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	i := int(float64(len(xs))*p/100+0.999999) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
