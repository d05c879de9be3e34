package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rosetta-mesh/rosetta/pkg/controller"
)

// validateDir checks a controller config folder (rosetta-controller
// --config-dir) as the controller reads it: every document the controller
// rejects, and every MetaRouter, Redis or authorization object it would
// not accept, makes the folder invalid. Objects of other APIs and
// unresolved references are notes and warnings.
func validateDir(out io.Writer, dir string) error {
	in, err := controller.LoadDir(dir)
	if err != nil {
		return err
	}
	problems := 0
	for _, u := range in.Unused {
		if u.Rejected() {
			fmt.Fprintf(out, "%s: rejected: %s\n", dir, u)
			problems++
		} else {
			fmt.Fprintf(out, "%s: note: %s\n", dir, u)
		}
	}
	// Names are not looked up: validation stays offline, and a name that
	// does not resolve here may resolve where the controller runs.
	b := &controller.Builder{Options: controller.Options{Resolve: func(_ context.Context, host string) ([]string, error) {
		return []string{host}, nil
	}}}
	ix := b.Build(in)
	for _, kind := range []struct {
		name     string
		statuses map[string]controller.RouterStatus
	}{{"MetaRouter", ix.Statuses}, {"protocol object", ix.ProtocolStatuses()}, {"authorization policy", ix.AuthorizationStatuses()}} {
		problems += reportStatuses(out, dir, kind.name, kind.statuses)
	}
	for _, w := range ix.Warnings() {
		fmt.Fprintf(out, "%s: warning: %s\n", dir, w)
	}
	if problems > 0 {
		return errors.New(plural(problems, "problem"))
	}
	fmt.Fprintf(out, "%s: ok (%s, %s, %s)\n", dir, plural(len(in.MetaRouters), "MetaRouter"),
		plural(len(in.ServiceEntries)+len(in.Services), "service"), plural(len(in.DestinationRules), "DestinationRule"))
	return nil
}

// reportStatuses prints the conditions that are not True; an Accepted
// condition that is False counts as a problem, the others are warnings.
func reportStatuses(out io.Writer, dir, kind string, statuses map[string]controller.RouterStatus) int {
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
			fmt.Fprintf(out, "%s: %s: %s %s: %s %s: %s\n", dir, level, kind, k, c.Type, c.Reason, c.Message)
		}
	}
	return problems
}
