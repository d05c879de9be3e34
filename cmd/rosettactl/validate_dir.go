package main

import (
	"errors"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

// validateDir checks a controller config folder (rosetta-controller
// --config-dir), or one file of it, as the controller reads it: every
// document the controller rejects, every MetaRouter, Redis or
// authorization object it would not accept, and config it would send
// that a proxy would refuse make it invalid. Objects of other APIs and
// unresolved references are notes and warnings.
func validateDir(r *report, dir string) error {
	in, err := controller.LoadDir(dir)
	if err != nil {
		return err
	}
	problems := 0
	for _, u := range in.Unused {
		if u.Rejected() {
			r.add(dir, "rejected", "%s", u)
			problems++
		} else {
			r.add(dir, "note", "%s", u)
		}
	}
	b := &controller.Builder{Options: controller.Options{Resolve: offlineResolve}}
	ix := b.Build(in)
	for _, kind := range []struct {
		name     string
		statuses map[string]controller.RouterStatus
	}{{"MetaRouter", ix.Statuses}, {"protocol object", ix.ProtocolStatuses()}, {"authorization policy", ix.AuthorizationStatuses()}} {
		problems += reportStatuses(r, dir, kind.name, kind.statuses)
	}
	refused := map[string]bool{}
	for _, w := range ix.Refused() {
		refused[w] = true
		r.add(dir, "invalid", "%s", w)
		problems++
	}
	for _, w := range ix.Warnings() {
		if !refused[w] {
			r.add(dir, "warning", "%s", w)
		}
	}
	problems += compileForProxies(r, dir, in, ix)
	if problems > 0 {
		return errors.New(plural(problems, "problem"))
	}
	r.add(dir, "ok", "(%s, %s, %s)", plural(len(in.MetaRouters), "MetaRouter"),
		plural(len(in.ServiceEntries)+len(in.Services), "service"), plural(len(in.DestinationRules), "DestinationRule"))
	return nil
}

// compileForProxies generates the config a proxy in each MetaRouter's
// namespace would get and compiles it as the proxy does: what the
// translation lets through but a proxy would refuse (and NACK) is a
// problem here.
func compileForProxies(r *report, dir string, in *controller.Inputs, ix *controller.Index) int {
	namespaces := map[string]bool{}
	for _, mr := range in.MetaRouters {
		namespaces[mr.Namespace] = true
	}
	names := make([]string, 0, len(namespaces))
	for ns := range namespaces {
		names = append(names, ns)
	}
	sort.Strings(names)
	problems := 0
	for _, ns := range names {
		res := ix.Generate(&controller.Proxy{ID: "rosettactl", Namespace: ns, Labels: map[string]string{}})
		if err := proxy.Validate(*res); err != nil {
			r.add(dir, "invalid", "a proxy in namespace %q would refuse the config the controller sends it: %v", ns, err)
			problems++
		}
	}
	return problems
}

// reportStatuses adds the conditions that are not True; an Accepted
// condition that is False counts as a problem, the others are warnings.
func reportStatuses(r *report, dir, kind string, statuses map[string]controller.RouterStatus) int {
	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	problems := 0
	for _, k := range keys {
		for _, c := range statuses[k].Conditions {
			if c.Status == metav1.ConditionTrue {
				continue
			}
			level := "warning"
			if c.Type == "Accepted" {
				level = "invalid"
				problems++
			}
			r.add(dir, level, "%s %s: %s %s: %s", kind, k, c.Type, c.Reason, c.Message)
		}
	}
	return problems
}
