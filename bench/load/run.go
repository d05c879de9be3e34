package load

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// target is where the load goes: the provider itself or a proxy in front of
// it (a child process whose CPU and memory are measured).
type target struct {
	name  string
	addr  string
	admin string // rosetta's admin address, for a CPU profile and metrics
	hbone string // rosetta's HBONE port, when it terminates HBONE
	env   []string
	cmd   *exec.Cmd
	// dial connects one client; nil: the driver's Dial to addr.
	dial func(payload int) (Client, error)
	// cleanup runs when the target stops, before the process does: what
	// its clients share (an HBONE row's HTTP/2 connection).
	cleanup []func()
}

// profile saves a CPU profile of the target over d to path, in the background.
func (t *target) profile(path string, d time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	if t.admin == "" || path == "" {
		return &wg
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.admin, int(d.Seconds())))
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest: profile:", err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		_ = os.WriteFile(path, b, 0o644)
	}()
	return &wg
}

func (t *target) start(bin string, args ...string) error {
	t.cmd = exec.Command(bin, args...)
	t.cmd.Env = append(os.Environ(), t.env...)
	t.cmd.Stdout, t.cmd.Stderr = os.Stderr, os.Stderr
	return t.cmd.Start()
}

func (t *target) stop() {
	for _, f := range t.cleanup {
		f()
	}
	if t.cmd != nil && t.cmd.Process != nil {
		_ = t.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = t.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = t.cmd.Process.Kill()
		}
	}
}

type result struct {
	name          string
	requests      int
	errors        int
	throughput    float64
	p50, p90, p99 time.Duration
	cpuPer1000    float64 // CPU seconds per 1000 requests; <0 when not measured
	rssMB         float64
	saturated     float64
	// harnessPer1000 is this process's CPU seconds per 1000 requests: the
	// clients and, when the driver serves in process, the server.
	harnessPer1000 float64
}

func dialAll(d Driver, t *target, n, payload int) ([]Client, error) {
	cs := make([]Client, 0, n)
	for i := 0; i < n; i++ {
		var c Client
		var err error
		if t.dial != nil {
			c, err = t.dial(payload)
		} else {
			c, err = d.Dial(t.addr, payload)
		}
		if err != nil {
			for _, x := range cs {
				x.Close()
			}
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// fixedRate sends o.Rate requests a second spread over o.Conns connections
// for o.Duration. Latency counts from each request's scheduled time, so a
// stall delays (and is charged to) the requests behind it.
func fixedRate(d Driver, t *target, o Options) (result, error) {
	cs, err := dialAll(d, t, o.Conns, o.Payload)
	if err != nil {
		return result{}, err
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	warm(cs)
	prof := t.profile(o.Profile, o.Duration)
	defer prof.Wait()
	cpu0, self0 := cpuSeconds(t), procCPU(os.Getpid())
	perConn := time.Duration(float64(time.Second) * float64(o.Conns) / float64(o.Rate))
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	var wg sync.WaitGroup
	begin := time.Now()
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, int(o.Duration/perConn)+1)
			// Stagger the connections so the rate is even, not 16 at once.
			next := begin.Add(perConn * time.Duration(i) / time.Duration(len(cs)))
			var inner sync.WaitGroup
			var lmu sync.Mutex
			for next.Before(begin.Add(o.Duration)) {
				time.Sleep(time.Until(next))
				sched := next
				inner.Add(1)
				go func() {
					defer inner.Done()
					err := c.Call()
					d := time.Since(sched)
					if err != nil {
						errs.Add(1)
						return
					}
					lmu.Lock()
					local = append(local, d)
					lmu.Unlock()
				}()
				next = next.Add(perConn)
			}
			inner.Wait()
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	r := summarize(t.name, lat, int(errs.Load()), elapsed)
	r.harnessPer1000 = (procCPU(os.Getpid()) - self0) / float64(r.requests) * 1000
	r.cpuPer1000, r.rssMB = -1, -1
	if t.cmd != nil {
		r.cpuPer1000 = (cpuSeconds(t) - cpu0) / float64(r.requests) * 1000
		r.rssMB = rssMB(t)
	}
	return r, nil
}

// saturate keeps o.Inflight calls in flight on every connection for half of
// o.Duration and reports the throughput.
func saturate(d Driver, t *target, o Options) (result, error) {
	cs, err := dialAll(d, t, o.Conns, o.Payload)
	if err != nil {
		return result{}, err
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	warm(cs)
	var n, errs atomic.Int64
	stop := time.Now().Add(o.Duration / 2)
	begin := time.Now()
	var wg sync.WaitGroup
	for _, c := range cs {
		for j := 0; j < o.Inflight; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					if err := c.Call(); err != nil {
						errs.Add(1)
						continue
					}
					n.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if errs.Load() > 0 {
		return result{}, fmt.Errorf("%d calls failed under saturation", errs.Load())
	}
	return result{throughput: float64(n.Load()) / time.Since(begin).Seconds()}, nil
}

func warm(cs []Client) {
	for i := 0; i < 200; i++ {
		_ = cs[i%len(cs)].Call()
	}
}

func summarize(name string, lat []time.Duration, errs int, elapsed time.Duration) result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	return result{name: name, requests: len(lat), errors: errs, throughput: float64(len(lat)) / elapsed.Seconds(),
		p50: pct(0.50), p90: pct(0.90), p99: pct(0.99)}
}

// cpuSeconds is the child's user+system time.
func cpuSeconds(t *target) float64 {
	if t.cmd == nil {
		return 0
	}
	return procCPU(t.cmd.Process.Pid)
}

// procCPU reads a process's user+system time from /proc (clock ticks of
// 10 ms, Linux's USER_HZ of 100).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100
}

func rssMB(t *target) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", t.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return -1
}

func printTable(w io.Writer, title string, o Options, rows []result) {
	fmt.Fprintf(w, "%s echo, %d-byte payload, %d connections; fixed rate %d req/s for %v; saturation with %d in flight per connection.\n\n",
		title, o.Payload, o.Conns, o.Rate, o.Duration, o.Inflight)
	fmt.Fprintln(w, "| path | req/s | errors | p50 | p90 | p99 | added p50 | added p99 | proxy CPU s / 1000 req | proxy RSS MB | saturated req/s | saturated vs direct |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	base := rows[0]
	for _, r := range rows {
		cpu, rss := "-", "-"
		if r.cpuPer1000 >= 0 {
			cpu, rss = fmt.Sprintf("%.4f", r.cpuPer1000), fmt.Sprintf("%.1f", r.rssMB)
		}
		fmt.Fprintf(w, "| %s | %.0f | %d | %s | %s | %s | %s | %s | %s | %s | %.0f | %.2f |\n",
			r.name, r.throughput, r.errors, ms(r.p50), ms(r.p90), ms(r.p99), ms(r.p50-base.p50), ms(r.p99-base.p99), cpu, rss, r.saturated, r.saturated/base.saturated)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Port returns addr's port.
func Port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// WaitHTTP polls url until it answers 200 or d passes.
func WaitHTTP(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("not ready: " + url)
}

// WaitTCP polls addr until it accepts a connection or d passes.
func WaitTCP(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("not listening: " + addr)
}
