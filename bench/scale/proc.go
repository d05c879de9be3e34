package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTick is Linux's USER_HZ, the unit of /proc/<pid>/stat's CPU times.
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which may hold spaces; utime and
	// stime are the 14th and 15th fields of the line.
	rest := string(data)[strings.LastIndexByte(string(data), ')')+2:]
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("scale: /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("scale: /proc/%d/stat: bad times", pid)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// memory reads the process's resident memory now (VmRSS) and at its peak
// (VmHWM), in MB.
func memory(pid int) (rss, peak float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak, sc.Err()
}

// sampler reads a process's RSS every interval, and when a phase
// starts, into the phase set last.
type sampler struct {
	pid     int
	mu      sync.Mutex
	phase   string
	samples map[string][]float64
	stop    chan struct{}
	done    chan struct{}
}

func startSampler(pid int, every time.Duration) *sampler {
	s := &sampler{pid: pid, samples: map[string][]float64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			if !s.sample() {
				return // the process is gone
			}
		}
	}()
	return s
}

func (s *sampler) sample() bool {
	rss, _, err := memory(s.pid)
	if err != nil {
		return false
	}
	s.mu.Lock()
	s.samples[s.phase] = append(s.samples[s.phase], rss)
	s.mu.Unlock()
	return true
}

func (s *sampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
	s.sample()
}

// stats returns the mean and the largest sample of a phase.
func (s *sampler) stats(phase string) (mean, largest float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	xs := s.samples[phase]
	for _, x := range xs {
		mean += x
		largest = max(largest, x)
	}
	if len(xs) > 0 {
		mean /= float64(len(xs))
	}
	return mean, largest
}

func (s *sampler) close() {
	close(s.stop)
	<-s.done
}

// pushCount reads how many pushes the controller has made: the count of
// rosetta_xds_push_duration_seconds, observed once per Server.Update.
func pushCount(metricsURL string) (int, error) {
	n, err := metricSum(metricsURL, "rosetta_xds_push_duration_seconds_count")
	return int(n), err
}

// generationCount reads how many scopes the controller has generated,
// for every reason.
func generationCount(metricsURL string) (int, error) {
	n, err := metricSum(metricsURL, "rosetta_xds_scope_generations_total")
	return int(n), err
}

// metricSum sums the samples of a metric, over all its labels.
func metricSum(metricsURL, name string) (float64, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(metricsURL)
	if err != nil {
		return 0, fmt.Errorf("scale: metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sum, found := 0.0, false
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || (!strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{")) {
			continue
		}
		v := rest[strings.LastIndexByte(rest, ' ')+1:]
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("scale: metrics: %s: %w", name, err)
		}
		sum, found = sum+n, true
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("scale: metrics: %w", err)
	}
	if !found {
		return 0, fmt.Errorf("scale: metrics: no %s at %s", name, metricsURL)
	}
	return sum, nil
}
