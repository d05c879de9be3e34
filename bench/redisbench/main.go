// Command redisbench runs redis-benchmark against a Redis server directly,
// through twemproxy (Debian's nutcracker) and through rosetta-proxy, in one
// run, and prints a table: GET and SET requests per second and latency
// percentiles, unpipelined and with -P 16. `make bench` runs it.
package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rosetta-mesh/rosetta/bench/load"
)

type options struct {
	proxyBin string
	clients  int
	requests int
	pipeline int
	// pipelined false runs the unpipelined tests only.
	pipelined bool
	// pipeRequests is -n for the pipelined runs: pipelining is many times
	// faster, so they need more requests to last as long.
	pipeRequests int
	rounds       int
	// placements adds the unpipelined runs with each placement pinned.
	placements bool
	// baselineBin, when set, is a second rosetta-proxy binary (the build
	// before a change) run as more paths in the same rounds.
	baselineBin string
	// allCPUs adds each build on every CPU to the paths.
	allCPUs bool
}

func main() {
	var o options
	flag.StringVar(&o.proxyBin, "proxy", "bin/rosetta-proxy", "the rosetta-proxy binary")
	flag.IntVar(&o.clients, "c", 50, "redis-benchmark connections")
	flag.IntVar(&o.requests, "n", 200000, "requests per test")
	flag.IntVar(&o.pipeline, "P", 16, "pipeline depth of the pipelined runs")
	flag.BoolVar(&o.pipelined, "pipelined", true, "run the pipelined tests too (false: unpipelined only, for many rounds of them)")
	flag.IntVar(&o.pipeRequests, "pn", 1000000, "requests per pipelined test")
	flag.IntVar(&o.rounds, "rounds", 3, "runs of every path, taken in turn; the table shows each cell's median")
	flag.BoolVar(&o.placements, "placements", false, "then run the unpipelined tests with the client, redis-server and proxy pinned to CPUs 0 and 1 in each arrangement")
	flag.StringVar(&o.baselineBin, "baseline", "", "another rosetta-proxy binary, such as the build before a change, run as -proxy is (on 1 thread, and on every CPU unless -all-cpus=false) in the same rounds")
	flag.BoolVar(&o.allCPUs, "all-cpus", true, "also run each build on every CPU (false: on one thread only, for more rounds in the same time)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "redisbench:", err)
		os.Exit(1)
	}
}

type proc struct {
	name string
	addr string
	cmd  *exec.Cmd
}

func (p *proc) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

func start(name, addr string, bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, addr: addr, cmd: cmd}
	if err := load.WaitTCP(addr, 10*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "rosetta-redisbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	redisAddr := load.FreeAddr()
	redis, err := start("redis", redisAddr, "redis-server", "--port", load.Port(redisAddr), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err != nil {
		return err
	}
	defer redis.stop()
	twem, err := startTwemproxy(dir, redisAddr)
	if err != nil {
		return err
	}
	defer twem.stop()
	procs := []*proc{redis, twem}
	// placed are the proxies -placements runs: twemproxy and each build on
	// one thread, as twemproxy runs.
	placed := []*proc{twem}
	type build struct{ name, bin string }
	builds := []build{{"rosetta", o.proxyBin}}
	if o.baselineBin != "" {
		builds = append(builds, build{"baseline", o.baselineBin})
	}
	for _, b := range builds {
		ps, err := startRosettas(b.name, b.bin, dir, redisAddr, o.allCPUs)
		for _, p := range ps {
			defer p.stop()
		}
		if err != nil {
			return err
		}
		procs = append(procs, ps...)
		placed = append(placed, ps[0])
	}

	fmt.Printf("redis-benchmark -c %d -t get,set: -n %d, then -n %d with -P %d; Redis %s; medians of %d rounds, the paths in the orders of a balanced Latin square (each path runs after each other one equally often).\n", o.clients, o.requests, o.pipeRequests, o.pipeline, redisAddr, o.rounds)
	fmt.Println("The last two columns are the median of each round's ratio to twemproxy's run in the same round, the lowest and highest, and from 5 rounds on their geometric mean with its 95% confidence interval.")
	fmt.Println()
	fmt.Println("CPU is the path's own process (redis-server for the direct path, else the proxy), in microseconds per request over GET and SET; the second table splits the whole machine's time per request.")
	fmt.Println()
	fmt.Println("| path | pipeline | GET req/s | GET p50 | GET p99 | SET req/s | SET p50 | SET p99 | CPU µs/req | GET vs twemproxy | SET vs twemproxy |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	pipes := []int{1}
	if o.pipelined {
		pipes = append(pipes, o.pipeline)
	}
	costs := map[int]map[string][]map[string]row{}
	for _, pipe := range pipes {
		n := o.requests
		if pipe > 1 {
			n = o.pipeRequests
		}
		runs, err := rounds(procs, o.rounds, func(p *proc) (map[string]row, error) { return benchCPU(p, redis, o.clients, n, pipe, -1) })
		if err != nil {
			return err
		}
		costs[pipe] = runs
		for _, p := range procs {
			r := medians(runs[p.name])
			fmt.Printf("| %s | %d | %.0f | %.3f ms | %.3f ms | %.0f | %.3f ms | %.3f ms | %.2f | %s | %s |\n", p.name, pipe,
				r["GET"].rps, r["GET"].p50, r["GET"].p99, r["SET"].rps, r["SET"].p50, r["SET"].p99, r[costPath].rps,
				ratios(runs[p.name], runs["twemproxy"], "GET"), ratios(runs[p.name], runs["twemproxy"], "SET"))
		}
	}
	fmt.Println()
	fmt.Println("| path | pipeline | proxy µs/req | redis-server µs/req | redis-benchmark µs/req | idle µs/req | sum |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, pipe := range pipes {
		for _, p := range procs {
			fmt.Println(costRow(p, redis, pipe, medians(costs[pipe][p.name])))
		}
	}
	if o.placements {
		return runPlacements(o, redis, placed)
	}
	return nil
}

// costRow is one path's line of the cost table; the direct path has no
// proxy.
func costRow(p, redis *proc, pipe int, r map[string]row) string {
	proxy, sum := "-", r[costRedis].rps+r[costClient].rps+r[costIdle].rps
	if p != redis {
		proxy = fmt.Sprintf("%.2f", r[costPath].rps)
		sum += r[costPath].rps
	}
	return fmt.Sprintf("| %s | %d | %s | %.2f | %.2f | %.2f | %.2f |", p.name, pipe, proxy, r[costRedis].rps, r[costClient].rps, r[costIdle].rps, sum)
}

// rounds runs every path n times, in the orders of a balanced Latin
// square (order): every path runs in every position, and right after every
// other path, equally often over a whole square. A path's run depends on
// the one before it (the scheduler places a run's processes from where they
// last ran), so with a fixed successor, as a mere rotation gives, two
// copies of one binary measured 10% apart.
func rounds(procs []*proc, n int, run func(*proc) (map[string]row, error)) (map[string][]map[string]row, error) {
	runs := map[string][]map[string]row{}
	square := order(len(procs))
	for i := range n {
		for _, k := range square[i%len(square)] {
			p := procs[k]
			r, err := run(p)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			runs[p.name] = append(runs[p.name], r)
		}
	}
	return runs, nil
}

// order is a Williams design for k paths: rows of 0..k-1 in which each
// path follows each other path equally often (once per k rows for even k;
// for odd k, once per 2k rows, the rows and their mirrors).
func order(k int) [][]int {
	// The first row is 0, 1, k-1, 2, k-2, ...; row i adds i to each.
	first := make([]int, k)
	for j := 1; j < k; j++ {
		if j%2 == 1 {
			first[j] = (j + 1) / 2
		} else {
			first[j] = k - j/2
		}
	}
	rows := make([][]int, 0, 2*k)
	for i := range k {
		row := make([]int, k)
		for j, v := range first {
			row[j] = (v + i) % k
		}
		rows = append(rows, row)
	}
	if k%2 == 1 {
		for i := range k {
			row := make([]int, k)
			for j := range row {
				row[j] = rows[i][k-1-j]
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// ratios compares a path with the baseline round by round: the machine's
// speed drifts between rounds more than between two runs of one round.
func ratios(runs, base []map[string]row, test string) string {
	rs := make([]float64, len(runs))
	for i := range runs {
		rs[i] = runs[i][test].rps / base[i][test].rps
	}
	m := median(rs) // sorts rs
	out := fmt.Sprintf("%.2f (%.2f-%.2f", m, rs[0], rs[len(rs)-1])
	if len(rs) >= 5 {
		gm, lo, hi := geoMean(rs)
		out += fmt.Sprintf("; gm %.2f, 95%% %.2f-%.2f", gm, lo, hi)
	}
	return out + ")"
}

// geoMean is the geometric mean of ratios with a 95% confidence interval
// (normal approximation on the logarithms).
func geoMean(rs []float64) (gm, lo, hi float64) {
	var sum, sq float64
	for _, r := range rs {
		sum += math.Log(r)
	}
	mean := sum / float64(len(rs))
	for _, r := range rs {
		d := math.Log(r) - mean
		sq += d * d
	}
	se := math.Sqrt(sq/float64(len(rs)-1)) / math.Sqrt(float64(len(rs)))
	return math.Exp(mean), math.Exp(mean - 1.96*se), math.Exp(mean + 1.96*se)
}

// row is one test's requests per second and percentiles. The cost rows
// (costPath and the others below) keep microseconds per request in rps.
type row struct{ rps, p50, p99 float64 }

// The cost rows benchCPU adds: where the machine's time went per request.
// Unpipelined, the three processes share two cores, so a path is as fast
// as the sum of their costs and the idle time lets it be.
const (
	costPath   = "CPU"    // the path's own process: the proxy, or redis-server when direct
	costRedis  = "redis"  // redis-server
	costClient = "client" // redis-benchmark
	costIdle   = "idle"   // every CPU's idle time
)

// benchCPU runs bench and adds what the path's process, redis-server, the
// client and the idle CPUs spent per request.
func benchCPU(p, redis *proc, clients, requests, pipe, cpu int) (map[string]row, error) {
	pathBefore, err1 := cpuTime(p.cmd.Process.Pid)
	redisBefore, err2 := cpuTime(redis.cmd.Process.Pid)
	idleBefore, err3 := idleTime()
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	rows, client, err := bench(p.addr, clients, requests, pipe, cpu)
	if err != nil {
		return nil, err
	}
	pathAfter, err1 := cpuTime(p.cmd.Process.Pid)
	redisAfter, err2 := cpuTime(redis.cmd.Process.Pid)
	idleAfter, err3 := idleTime()
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	perRequest := func(d time.Duration) row {
		return row{rps: float64(d) / float64(time.Microsecond) / float64(2*requests)}
	}
	rows[costPath] = perRequest(pathAfter - pathBefore)
	rows[costRedis] = perRequest(redisAfter - redisBefore)
	rows[costClient] = perRequest(client)
	rows[costIdle] = perRequest(idleAfter - idleBefore)
	return rows, nil
}

// idleTime is the time every CPU has spent idle or waiting for I/O.
func idleTime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseIdle(b)
}

// parseIdle reads the idle and iowait fields of /proc/stat's first line,
// the sum over all CPUs, in clock ticks of 10 ms.
func parseIdle(stat []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 6 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	idle, err1 := strconv.ParseInt(f[4], 10, 64)
	iowait, err2 := strconv.ParseInt(f[5], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/stat: %w", err)
	}
	return time.Duration(idle+iowait) * 10 * time.Millisecond, nil
}

// cpuTime is the user and system time a process has used, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 10 ms).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it
	// start past its closing parenthesis.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// medians takes each test's median requests per second and percentiles
// over runs, each on its own.
func medians(runs []map[string]row) map[string]row {
	out := map[string]row{}
	for test := range runs[0] {
		var rps, p50, p99 []float64
		for _, r := range runs {
			rps, p50, p99 = append(rps, r[test].rps), append(p50, r[test].p50), append(p99, r[test].p99)
		}
		out[test] = row{median(rps), median(p50), median(p99)}
	}
	return out
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// bench runs redis-benchmark with --csv and reads its rows:
// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms";
// it also returns the CPU time redis-benchmark used. A cpu of 0 or more
// pins it there (with util-linux's taskset).
func bench(addr string, clients, requests, pipe, cpu int) (map[string]row, time.Duration, error) {
	args := []string{"redis-benchmark", "-h", "127.0.0.1", "-p", load.Port(addr), "-c", strconv.Itoa(clients),
		"-n", strconv.Itoa(requests), "-P", strconv.Itoa(pipe), "-t", "get,set", "--csv"}
	if cpu >= 0 {
		args = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	out, err := cmd.Output()
	if err != nil {
		return nil, 0, fmt.Errorf("redis-benchmark: %w", err)
	}
	client := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	rows, err := parseCSV(out)
	return rows, client, err
}

// parseCSV reads redis-benchmark's GET and SET rows.
func parseCSV(out []byte) (map[string]row, error) {
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		return nil, err
	}
	rows := map[string]row{}
	for _, r := range recs {
		if len(r) < 7 || r[0] == "test" {
			continue
		}
		rps, _ := strconv.ParseFloat(r[1], 64)
		p50, _ := strconv.ParseFloat(r[4], 64)
		p99, _ := strconv.ParseFloat(r[6], 64)
		rows[r[0]] = row{rps, p50, p99}
	}
	if rows["GET"].rps == 0 || rows["SET"].rps == 0 {
		return nil, errors.New("redis-benchmark printed no GET/SET rows:\n" + string(out))
	}
	return rows, nil
}

func startTwemproxy(dir, redisAddr string) (*proc, error) {
	addr := load.FreeAddr()
	cfg := fmt.Sprintf(`bench:
  listen: %s
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  servers:
   - %s:1
`, addr, redisAddr)
	path := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return start("twemproxy", addr, "nutcracker", "-c", path, "-s", load.Port(load.FreeAddr()))
}

// startRosettas starts bin on one thread, as twemproxy runs, and, with
// allCPUs, on every CPU, under the paths' names "<name>, 1 thread" and
// "<name>, N threads". On an error it also returns those it started, for
// the caller to stop.
func startRosettas(name, bin, dir, redisAddr string, allCPUs bool) ([]*proc, error) {
	var ps []*proc
	one, err := startRosetta(name+", 1 thread", bin, dir, redisAddr, 1)
	if one != nil {
		ps = append(ps, one)
	}
	if err != nil || !allCPUs {
		return ps, err
	}
	all, err := startRosetta(fmt.Sprintf("%s, %d threads", name, runtime.NumCPU()), bin, dir, redisAddr, runtime.NumCPU())
	if all != nil {
		ps = append(ps, all)
	}
	return ps, err
}

// startRosetta starts rosetta-proxy with --concurrency concurrency.
func startRosetta(name, bin, dir, redisAddr string, concurrency int) (*proc, error) {
	addr, admin := load.FreeAddr(), load.FreeAddr()
	cfg := fmt.Sprintf(`admin: {address: %q}
listeners:
- name: redis
  address: {socket_address: {address: 127.0.0.1, port_value: %s}}
  filter_chains:
  - filters:
    - name: rosetta.metaprotocol
      typed_config:
        "@type": type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy
        codec: redis
        route_config_name: redis
routes:
- name: redis
  routes:
  - name: all
    route: {cluster: redis}
clusters:
- name: redis
  connect_timeout: 1s
  load_assignment:
    cluster_name: redis
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]
`, admin, load.Port(addr), load.Port(redisAddr))
	path := filepath.Join(dir, load.Port(addr)+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p, err := start(name, addr, bin, "--config", path, "--log-level", "warn", "--concurrency", strconv.Itoa(concurrency))
	if err != nil {
		return nil, err
	}
	return p, load.WaitHTTP("http://"+admin+"/ready", 10*time.Second)
}
