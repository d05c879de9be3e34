package main

import "fmt"

// A placement puts the client, redis-server and the proxy on chosen CPUs.
// Unpipelined on two CPUs, the three busy processes always leave two of
// them sharing one CPU, and which two is the scheduler's choice: it is made
// when a run starts and rarely changes within it, and it moves a run's
// throughput by 30% or more, for every proxy alike. Pinning each
// arrangement in turn compares the paths within each.
type placement struct {
	name                   string
	client, redis, proxies int // the first (0) or second (1) CPU this process may use
}

var placements = []placement{
	{"client alone", 1, 0, 0},
	{"client with redis-server", 1, 1, 0},
	{"client with the proxy", 1, 0, 1},
}

// runPlacements prints, for each placement, the unpipelined runs of the
// direct path and the given proxies (twemproxy and Rosetta on one thread,
// and the baseline's), taken in turn for the given rounds.
func runPlacements(o options, redis *proc, paths []*proc) error {
	cpus := allCPUs()
	if len(cpus) < 2 {
		return fmt.Errorf("placements need two CPUs, this process may use %d", len(cpus))
	}
	all := append([]*proc{redis}, paths...)
	defer func() {
		for _, p := range all {
			_ = pin(p.cmd.Process.Pid, cpus...)
		}
	}()
	fmt.Println()
	fmt.Printf("Each placement pinned: redis-benchmark -c %d -n %d -t get,set unpipelined, %d rounds; CPU columns in µs per request.\n", o.clients, o.requests, o.rounds)
	fmt.Println()
	fmt.Println("| placement | path | GET req/s | SET req/s | proxy CPU | redis-server CPU | GET vs twemproxy | SET vs twemproxy |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, pl := range placements {
		if err := pin(redis.cmd.Process.Pid, cpus[pl.redis]); err != nil {
			return err
		}
		for _, p := range paths {
			if err := pin(p.cmd.Process.Pid, cpus[pl.proxies]); err != nil {
				return err
			}
		}
		ps := all
		if pl.proxies == pl.client {
			ps = paths // the direct path would be "client alone" again
		}
		client := cpus[pl.client]
		runs, err := rounds(ps, o.rounds, func(p *proc) (map[string]row, error) {
			return benchCPU(p, redis, o.clients, o.requests, 1, client)
		})
		if err != nil {
			return err
		}
		for _, p := range ps {
			fmt.Println(placementRow(pl, p, redis, runs[p.name], runs["twemproxy"]))
		}
	}
	return nil
}

// placementRow is one path's line of a placement's table.
func placementRow(pl placement, p, redis *proc, runs, twem []map[string]row) string {
	r := medians(runs)
	proxy := "-"
	if p != redis {
		proxy = fmt.Sprintf("%.2f", r[costPath].rps)
	}
	return fmt.Sprintf("| %s | %s | %.0f | %.0f | %s | %.2f | %s | %s |", pl.name, p.name, r["GET"].rps, r["SET"].rps, proxy,
		r[costRedis].rps, ratios(runs, twem, "GET"), ratios(runs, twem, "SET"))
}
