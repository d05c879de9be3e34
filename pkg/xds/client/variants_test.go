package client

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// The tests in this file hold for both variants, against go-control-plane's
// server on a loopback port.

// waitFor waits until the last set the proxy accepted satisfies cond.
func waitFor(t *testing.T, rec *recorder, what string, cond func(config.Resources) bool) config.Resources {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, what, func() bool { r, n := rec.last(); return n > 0 && cond(r) })
	r, _ := rec.last()
	return r
}

// quietFor waits until the client has answered nothing for d.
func quietFor(t *testing.T, cp *controlPlane, d time.Duration) []answer {
	t.Helper()
	var got []answer
	for {
		a, ok := cp.nextAnswer(t, d)
		if !ok {
			return got
		}
		got = append(got, a)
	}
}

// withTimeout is the cluster named name in res, its connect timeout set
// to d.
func withTimeout(res config.Resources, name string, d time.Duration) config.Resources {
	out := clone(res)
	find(out.Clusters, name).ConnectTimeout = durationpb.New(d)
	return out
}

func timeoutOf(res config.Resources, name string) time.Duration {
	return find(res.Clusters, name).GetConnectTimeout().AsDuration()
}

// TestClientAppliesTheServedSet: the proxy is given every resource the
// listeners and clusters reach, in one complete set; a change and a new
// service arrive each as one complete set. Every set handed over is
// complete.
func TestClientAppliesTheServedSet(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			cp := startControlPlane(t)
			served := mesh(t, 3)
			cp.set(t, served)
			rec := &recorder{}
			startClient(t, cp.addr, v.delta, rec, nil)
			got := waitFor(t, rec, "the first set", func(r config.Resources) bool { return len(r.Listeners) > 0 })
			if w, g := names(served), names(got); !namesEqual(w, g) {
				t.Fatalf("first set %v, served %v", g, w)
			}
			for typ, list := range byType(served) {
				for _, m := range list {
					if h := find(byType(got)[typ], nameOf(m)); !proto.Equal(h, m) {
						t.Errorf("%s %s: got %v, served %v", typ, nameOf(m), h, m)
					}
				}
			}

			next := clone(served)
			find(next.Routes, "svc-1").Routes[0].Route.ClusterSpecifier = &configv1alpha1.RouteAction_Cluster{Cluster: "svc-2"}
			cp.set(t, next)
			waitFor(t, rec, "the route change", func(r config.Resources) bool {
				return find(r.Routes, "svc-1").GetRoutes()[0].GetRoute().GetCluster() == "svc-2"
			})

			grown := clone(mesh(t, 4))
			cp.set(t, grown)
			got = waitFor(t, rec, "the new service", func(r config.Resources) bool { return find(r.Listeners, "svc-3") != nil })
			if find(got.Clusters, "svc-3") == nil || find(got.Endpoints, "svc-3") == nil || find(got.Routes, "svc-3") == nil {
				t.Fatalf("the new service came without its route, cluster or endpoints: %v", names(got))
			}
			for i, set := range rec.all() {
				if m := checkRefs(&set); m != "" {
					t.Errorf("set %d was handed over without %s", i, m)
				}
			}
		})
	}
}

func namesEqual(a, b map[string][]string) bool {
	for _, typ := range typeOrder {
		x, y := slices.Sorted(slices.Values(a[typ])), slices.Sorted(slices.Values(b[typ]))
		if !slices.Equal(x, y) {
			return false
		}
	}
	return true
}

// TestOneChangeSendsOneResource: with 200 services, a change to one
// cluster sends that cluster alone over delta, and every cluster in state
// of the world.
func TestOneChangeSendsOneResource(t *testing.T) {
	const services = 200
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			rec := &recorder{}
			cp, served, w := synced(t, v, services, rec)
			quietFor(t, cp, 200*time.Millisecond)
			before := w.count()

			cp.set(t, withTimeout(served, "svc-7", 7*time.Second))
			waitFor(t, rec, "the change", func(r config.Resources) bool { return timeoutOf(r, "svc-7") == 7*time.Second })
			quietFor(t, cp, 200*time.Millisecond)
			var sent []string
			for _, r := range w.since(before) {
				if r.typeURL != config.ClusterType && len(r.names)+len(r.removed) > 0 {
					t.Errorf("a %s response came with %d resources", r.typeURL, len(r.names)+len(r.removed))
				}
				sent = append(sent, r.names...)
			}
			want := services
			if v.delta {
				want = 1
			}
			if len(sent) != want || v.delta && sent[0] != "svc-7" {
				t.Fatalf("the change sent %d clusters (%.5v), want %d", len(sent), sent, want)
			}
		})
	}
}

// TestRemovedResourceLeavesTheConfig: a service removed from the served
// set (listener, route configuration, cluster, endpoints) is gone from the
// next set the proxy is given.
func TestRemovedResourceLeavesTheConfig(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			rec := &recorder{}
			cp, served, w := synced(t, v, 3, rec)

			cp.set(t, without(served, "svc-1"))
			// State of the world may hand over a set with the new
			// listeners and clusters before the routes and endpoints
			// that follow them arrive: wait for the last.
			got := waitFor(t, rec, "the removal", func(r config.Resources) bool {
				for _, list := range names(r) {
					if slices.Contains(list, "svc-1") {
						return false
					}
				}
				return true
			})
			if !namesEqual(names(got), names(without(served, "svc-1"))) {
				t.Fatalf("after the removal: %v", names(got))
			}

			if !v.delta {
				return
			}
			// Delta says so with removed_resources for the wildcard
			// types, and the client drops its subscriptions to the route
			// configuration and endpoints no longer named.
			removed := map[string][]string{}
			for _, r := range w.since(0) {
				removed[r.typeURL] = append(removed[r.typeURL], r.removed...)
			}
			if !slices.Equal(removed[config.ListenerType], []string{"svc-1"}) || !slices.Equal(removed[config.ClusterType], []string{"svc-1"}) {
				t.Errorf("removed_resources received: %v", removed)
			}
			unsubscribed := map[string][]string{}
			w.mu.Lock()
			for _, req := range w.requests {
				unsubscribed[req.GetTypeUrl()] = append(unsubscribed[req.GetTypeUrl()], req.GetResourceNamesUnsubscribe()...)
			}
			w.mu.Unlock()
			if !slices.Equal(unsubscribed[config.RouteType], []string{"svc-1"}) || !slices.Equal(unsubscribed[config.EndpointType], []string{"svc-1"}) {
				t.Errorf("unsubscribed: %v", unsubscribed)
			}
		})
	}
}

// badLB refuses a set with a MAGLEV cluster, naming it as the proxy
// would.
func badLB(res config.Resources) error {
	for i, c := range res.Clusters {
		if c.GetLbPolicy() == clusterv3.Cluster_MAGLEV {
			return fmt.Errorf("clusters[%d] (%s): lb_policy: MAGLEV is not supported", i, c.GetName())
		}
	}
	return nil
}

// TestRefusedSetKeepsTheLastGood: a set with a bad cluster is NACKed
// with the proxy's error, the last good set stays and the refused one is
// not sent again; a change elsewhere while the cluster is still bad is
// refused too (the set is built on what the controller sent); the fix
// is accepted with that change.
func TestRefusedSetKeepsTheLastGood(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			rec := &recorder{reject: badLB}
			cp, served, _ := synced(t, v, 3, rec)
			quietFor(t, cp, 200*time.Millisecond)
			_, applied := rec.last()

			bad := clone(served)
			find(bad.Clusters, "svc-1").LbPolicy = clusterv3.Cluster_MAGLEV
			cp.set(t, bad)
			a, ok := cp.nextAnswer(t, 3*time.Second)
			if !ok || !a.nack || a.typeURL != config.ClusterType || !strings.Contains(a.detail, "(svc-1): lb_policy: MAGLEV is not supported") {
				t.Fatalf("got %+v (%v), want a NACK of the clusters naming svc-1's lb_policy", a, ok)
			}
			if extra := quietFor(t, cp, 500*time.Millisecond); len(extra) > 0 {
				t.Fatalf("the refused clusters were sent again: %+v", extra)
			}
			if r, n := rec.last(); n != applied || find(r.Clusters, "svc-1").GetLbPolicy() == clusterv3.Cluster_MAGLEV {
				t.Fatal("the refused set replaced the last good one")
			}

			cp.set(t, withTimeout(bad, "svc-2", 2*time.Second))
			testutil.Eventually(t, 3*time.Second, "the second refusal", func() bool { return rec.refusedCount() == 2 })
			for _, a := range quietFor(t, cp, 200*time.Millisecond) {
				if !a.nack {
					t.Errorf("a set with the bad cluster was accepted: %+v", a)
				}
			}

			cp.set(t, withTimeout(served, "svc-2", 2*time.Second))
			got := waitFor(t, rec, "the fixed set", func(r config.Resources) bool { return timeoutOf(r, "svc-2") == 2*time.Second })
			if find(got.Clusters, "svc-1").GetLbPolicy() == clusterv3.Cluster_MAGLEV {
				t.Fatal("the fixed set has the bad cluster")
			}
			for _, a := range quietFor(t, cp, 200*time.Millisecond) {
				if a.nack {
					t.Errorf("the fix was refused: %+v", a)
				}
			}
		})
	}
}

// TestReconnectResyncs: the controller goes away and comes back with the
// same resources; the proxy keeps its config, and over delta is given
// nothing again (its initial_resource_versions say what it holds). A
// controller that comes back with a service less makes the proxy drop
// it, and a later change arrives as usual.
func TestReconnectResyncs(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			rec := &recorder{}
			cp, served, w := synced(t, v, 3, rec)
			quietFor(t, cp, 200*time.Millisecond)
			_, applied := rec.last()
			before := w.count()

			cp.restart(t, served)
			testutil.Eventually(t, 5*time.Second, "the resync", func() bool {
				w.mu.Lock()
				defer w.mu.Unlock()
				return w.streams >= 2 && len(w.responses) > before
			})
			quietFor(t, cp, 300*time.Millisecond)
			if v.delta {
				if _, n := rec.last(); n != applied {
					t.Errorf("the unchanged config was applied again (%d sets, %d before)", n, applied)
				}
				for _, r := range w.since(before) {
					if len(r.names)+len(r.removed) > 0 {
						t.Errorf("the resync sent %s %v, removed %v", r.typeURL, r.names, r.removed)
					}
				}
				checkInitialVersions(t, w, served)
			}
			if got, _ := rec.last(); !namesEqual(names(got), names(served)) {
				t.Fatalf("after the resync: %v", names(got))
			}

			cp.restart(t, without(served, "svc-2"))
			waitFor(t, rec, "the resync without svc-2", func(r config.Resources) bool {
				return len(r.Clusters) == 2 && find(r.Listeners, "svc-2") == nil && find(r.Endpoints, "svc-2") == nil
			})
			cp.set(t, withTimeout(without(served, "svc-2"), "svc-0", 9*time.Second))
			waitFor(t, rec, "a change after the resync", func(r config.Resources) bool { return timeoutOf(r, "svc-0") == 9*time.Second })
		})
	}
}

// checkInitialVersions checks the client's subscriptions on its last
// stream: the wildcard types and the names their resources name, each
// with the version of every resource it held.
func checkInitialVersions(t *testing.T, w *wire, held config.Resources) {
	t.Helper()
	snap, err := newTestSnapshot(held)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	var first []*discoveryRequestView
	seen := map[string]bool{}
	for i := len(w.requests) - 1; i >= 0; i-- {
		req := w.requests[i]
		if len(req.GetInitialResourceVersions()) > 0 || slices.Contains(req.GetResourceNamesSubscribe(), wildcard) {
			if !seen[req.GetTypeUrl()] {
				seen[req.GetTypeUrl()] = true
				first = append(first, &discoveryRequestView{req.GetTypeUrl(), req.GetResourceNamesSubscribe(), req.GetInitialResourceVersions()})
			}
		}
		if len(seen) == len(typeOrder) {
			break
		}
	}
	w.mu.Unlock()
	if len(first) != len(typeOrder) {
		t.Fatalf("the last stream subscribed to %d types with versions, want %d", len(first), len(typeOrder))
	}
	for _, req := range first {
		want := snap.hashes[req.typeURL]
		if len(req.versions) != len(want) {
			t.Errorf("%s: initial_resource_versions %v, want %v", req.typeURL, req.versions, want)
		}
		for name, v := range want {
			if req.versions[name] != v {
				t.Errorf("%s %s: initial version %q, want %q", req.typeURL, name, req.versions[name], v)
			}
		}
		if byName(req.typeURL) == slices.Contains(req.names, wildcard) {
			t.Errorf("%s subscribed to %v", req.typeURL, req.names)
		}
	}
}

type discoveryRequestView struct {
	typeURL  string
	names    []string
	versions map[string]string
}

// TestIncompleteSetIsHandedOverAfterAWhile: a listener naming a route
// configuration the controller does not have is held back, then handed
// over after IncompleteTimeout for the proxy to judge.
func TestIncompleteSetIsHandedOverAfterAWhile(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			cp := startControlPlane(t)
			served := mesh(t, 2)
			served.Routes = drop(served.Routes, "svc-1")
			cp.set(t, served)
			rec := &recorder{}
			start := time.Now()
			runClient(t, Options{Address: cp.addr, Delta: v.delta, IncompleteTimeout: 300 * time.Millisecond}, rec)
			got := waitFor(t, rec, "the incomplete set", func(config.Resources) bool { return true })
			if d := time.Since(start); d < 300*time.Millisecond {
				t.Errorf("the incomplete set was handed over after %v, before IncompleteTimeout", d)
			}
			if m := checkRefs(&got); m != "route configuration svc-1" {
				t.Errorf("the set handed over lacks %q, want the route configuration svc-1", m)
			}
		})
	}
}

// synced starts a control plane serving a mesh of n services and a client
// of variant v that hands its sets to rec, and waits for the first set;
// w counts what the client receives.
func synced(t *testing.T, v variant, n int, rec *recorder) (*controlPlane, config.Resources, *wire) {
	t.Helper()
	cp := startControlPlane(t)
	served := mesh(t, n)
	cp.set(t, served)
	w := &wire{}
	startClient(t, cp.addr, v.delta, rec, w)
	waitFor(t, rec, "the first set", func(r config.Resources) bool { return len(r.Clusters) == n })
	return cp, served, w
}
