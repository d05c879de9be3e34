// Command scale measures the controller at mesh scale: it writes a mesh
// of the given size as folder-mode YAML (Services with 3 endpoints in
// two EndpointSlices, a DestinationRule with two subsets and a MetaRouter
// per service, a Sidecar per namespace), starts rosetta-controller on it
// as a process of its own, and connects lightweight ADS clients
// subscribed as rosetta-proxy subscribes (delta xDS by default, or state
// of the world with -xds-mode sotw), which ACK every response. It
// reports the controller's start and the proxies' initial sync, then,
// for MetaRouter edits made one at a time (a file renamed into place,
// which the controller watches), the time from the edit to the last ACK
// among the proxies that should get it, the controller's CPU and RSS,
// and pushes; and how many pushes a burst of edits makes.
//
//	go run ./bench/scale -services 1000 -proxies 100 -namespaces 10
//	go run ./bench/scale -services 10000 -proxies 1000 -namespaces 100 -edits 50
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/cli"
)

func main() {
	o := options{progress: os.Stderr}
	flag.IntVar(&o.services, "services", 1000, "services in the mesh")
	flag.IntVar(&o.proxies, "proxies", 100, "proxies (ADS clients), spread round-robin over the namespaces")
	flag.IntVar(&o.namespaces, "namespaces", 10, "namespaces, each with a Sidecar that scopes its proxies to it")
	flag.StringVar(&o.xdsMode, "xds-mode", "delta", "how the proxies subscribe: delta (as rosetta-proxy does by default) or sotw (state of the world)")
	flag.IntVar(&o.edits, "edits", 100, "MetaRouter edits made one at a time")
	flag.DurationVar(&o.gap, "gap", 200*time.Millisecond, "quiet time after an edit's last ACK before the next edit")
	flag.IntVar(&o.burst, "burst", 1000, "edits of the burst made in a tight loop after the others (0: no burst)")
	flag.StringVar(&o.controller, "controller", "", "rosetta-controller binary (default: build this module's)")
	args := flag.String("controller-args", "", "flags added to the controller's command line, space-separated (e.g. \"--debounce 10ms\")")
	flag.StringVar(&o.dir, "dir", "", "work folder for the config, binary and controller log (default: a temporary one)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work folder")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "longest wait for the controller to start, the proxies to sync, or one edit")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of the controller, taken during the edits, to this file")
	flag.DurationVar(&o.profileFor, "profile-for", 20*time.Second, "length of the -profile")
	flag.BoolVar(&o.lazy, "lazy", false, "run the proxies in lazy mode, the controller with --lazy-fallback: each proxy reports it called -lazy-calls services of its namespace (no burst)")
	flag.IntVar(&o.lazyCalls, "lazy-calls", 10, "with -lazy: services each proxy called")
	flag.StringVar(&o.heapProfile, "heap-profile", "", "write a heap profile of the controller, taken after the edits, to this file")
	flag.StringVar(&o.syncProfile, "sync-profile", "", "write a CPU profile of the controller, taken from the proxies' first connection (-profile-for long), to this file")
	flag.Var((*cli.Bytes)(&o.memoryMax), "memory-max", "run the controller in a cgroup with this memory limit (Ki, Mi, Gi suffixes), as in a container: cgroup v2 memory.max, or v1 memory.limit_in_bytes; needs root (0: no cgroup)")
	flag.Parse()
	if *args != "" {
		o.controllerArgs = strings.Fields(*args)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
	res.print(os.Stdout)
}

// print writes the result as a Markdown table.
func (r *result) print(w io.Writer) {
	o := r.opts
	lat := append([]time.Duration(nil), r.latency...)
	if len(lat) == 0 {
		lat = []time.Duration{0} // lazy mode: no edit reached a proxy
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	secs := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	bin, flags := o.controller, "its default flags"
	if bin == "" {
		bin = "rosetta-controller built from this tree"
	}
	if len(o.controllerArgs) > 0 {
		flags = strings.Join(o.controllerArgs, " ")
	}
	mode := "delta xDS"
	if o.xdsMode == "sotw" {
		mode = "state-of-the-world xDS"
	}
	if o.lazy {
		mode += fmt.Sprintf(", lazy mode, %d services called per proxy", o.lazyCalls)
	}
	where := ""
	if o.memoryMax > 0 {
		where = fmt.Sprintf(", in a cgroup with a memory limit of %s", mib(o.memoryMax))
	}
	fmt.Fprintf(w, "%d services, %d proxies (%s), %d namespaces; %s with %s%s\n\n", o.services, o.proxies, mode, o.namespaces, bin, flags, where)
	fmt.Fprintln(w, "| measure | result |")
	fmt.Fprintln(w, "| --- | --- |")
	row := func(k, v string) { fmt.Fprintf(w, "| %s | %s |\n", k, v) }
	row("controller start to first push", secs(r.started))
	row(fmt.Sprintf("initial sync of all %d proxies", o.proxies), secs(r.synced))
	row("start and initial sync", secs(r.started+r.synced))
	row("config per proxy (median)", fmt.Sprintf("%.1f KB", float64(r.configBytes)/1024))
	row(fmt.Sprintf("edit -> last ACK, p50 / p99 (%d edits, %.1f proxies each, %v apart)", len(lat), r.receivers, o.gap),
		ms(percentile(lat, 50))+" / "+ms(percentile(lat, 99)))
	row("edit -> last ACK, max", ms(lat[len(lat)-1]))
	row("controller CPU per edit", ms(r.cpuPerEdit))
	row("controller pushes per edit", fmt.Sprintf("%.2f", r.pushesPerEdit))
	row("scope generations per edit", fmt.Sprintf("%.2f", r.generationsPerEdit))
	row("responses per receiving proxy per edit", fmt.Sprintf("%.2f", r.responses))
	row("resources per receiving proxy per edit", fmt.Sprintf("%.2f (%.1f KB)", r.resources, r.bytes/1024))
	row("responses to proxies the edit does not concern", fmt.Sprint(r.stray))
	row("controller RSS while serving edits, mean / max", fmt.Sprintf("%.0f / %.0f MB", r.rssMean, r.rssMax))
	row("controller RSS, peak of the run", fmt.Sprintf("%.0f MB", r.rssPeak))
	if o.memoryMax > 0 {
		row(fmt.Sprintf("controller's cgroup (memory limit %s): peak charged (page cache included); OOM kills", mib(o.memoryMax)),
			fmt.Sprintf("%.0f MB; %d", r.cgroupPeak, r.oomKills))
	}
	if b := r.burst; b != nil {
		row(fmt.Sprintf("burst of %d edits: controller pushes", b.edits), fmt.Sprint(b.pushes))
		row("burst: responses per proxy, mean / max", fmt.Sprintf("%.1f / %d", b.responsesMean, b.responsesMax))
		row("burst: first write -> last ACK; last write -> last ACK", ms(b.took)+"; "+ms(b.settled))
		row("burst: controller CPU", ms(b.cpu))
	}
	if m := r.memory; m != nil {
		row(fmt.Sprintf("memory per connected proxy (live heap and stacks: %.1f MB with %d proxies, %.1f MB with %d)",
			float64(m.all)/(1<<20), o.proxies, float64(m.kept)/(1<<20), o.proxies-m.left), fmt.Sprintf("%.1f KB", m.perProxyKB))
	}
}
