package controller

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"
)

// DefaultDNSRefresh is how often a Pipeline looks up again the names its
// last build resolved (ServiceEntries with resolution DNS, FQDN
// EndpointSlices, the hosts translators resolve). Go's resolver does not expose a record's
// TTL, so an interval stands in for it, as Envoy's dns_refresh_rate does
// for STRICT_DNS clusters without respect_dns_ttl.
const DefaultDNSRefresh = 30 * time.Second

// dnsMemory keeps, across builds, the last good answer for each name a
// build resolved, so that a failed lookup keeps the endpoints (as Envoy's
// STRICT_DNS keeps its hosts), and a refresh can tell whether an answer
// changed.
type dnsMemory struct {
	mu      sync.Mutex
	answers map[string][]string // sorted
	// used are the names the last build looked up; only they are
	// refreshed, so names no config uses any more are forgotten.
	used map[string]bool
}

// resolver wraps resolve for one build, recording in used the names it
// looks up.
func (d *dnsMemory) resolver(resolve Resolver, used map[string]bool) Resolver {
	return func(ctx context.Context, host string) ([]string, error) {
		got, err := resolve(ctx, host)
		d.mu.Lock()
		defer d.mu.Unlock()
		used[host] = true
		if d.answers == nil {
			d.answers = map[string][]string{}
		}
		if err != nil {
			if last, ok := d.answers[host]; ok {
				return slices.Clone(last), nil
			}
			return nil, err
		}
		d.answers[host] = sortedCopy(got)
		return got, nil
	}
}

// built records the names a finished build used. Answers are kept for
// these and for the previous build's names: an index resolves some names
// (a translator's, in a cluster patch) only when it generates, after its
// build.
func (d *dnsMemory) built(used map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for h := range d.answers {
		if !used[h] && !d.used[h] {
			delete(d.answers, h)
		}
	}
	d.used = used
}

// changed looks every name of the last build up again and returns those
// whose answer differs from the one the build used. A failed lookup is no
// change: the last good answer stays.
func (d *dnsMemory) changed(ctx context.Context, resolve Resolver) []string {
	d.mu.Lock()
	hosts := make([]string, 0, len(d.used))
	for h := range d.used {
		hosts = append(hosts, h)
	}
	d.mu.Unlock()
	sort.Strings(hosts)
	var out []string
	for _, h := range hosts {
		got, err := resolve(ctx, h)
		if err != nil {
			continue
		}
		d.mu.Lock()
		last, ok := d.answers[h]
		d.mu.Unlock()
		if !ok || !slices.Equal(sortedCopy(got), last) {
			out = append(out, h)
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

// ResolveAgain looks up again every name the last Build resolved and
// returns those whose answer changed since; a build then picks the new
// answers up.
func (b *Builder) ResolveAgain(ctx context.Context) []string {
	resolve := b.Options.Resolve
	if resolve == nil {
		resolve = DefaultResolver
	}
	return b.dns.changed(ctx, resolve)
}
