package controller

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// Why a document of the folder source is not used. Every reason but
// ReasonOtherAPI is a rejection: the document was meant for the controller
// and is wrong, and the file it is in keeps its last good version.
const (
	ReasonInvalidYAML   = "invalid_yaml"   // the stream does not parse
	ReasonMissingType   = "missing_type"   // no apiVersion or kind
	ReasonUnknownKind   = "unknown_kind"   // a kind no API the controller reads has, in one of Rosetta's or Aeraki's groups, or a misspelt kind it reads
	ReasonUnknownGroup  = "unknown_group"  // a kind the controller reads, in a group it does not read
	ReasonInvalidObject = "invalid_object" // an object of a kind the controller reads that does not decode (an unknown field, a wrong type)
	// ReasonOtherAPI is an object of an API the controller does not read
	// (a Deployment, a ConfigMap): a folder may hold those, so it is
	// reported but not rejected.
	ReasonOtherAPI = "other_api"
)

// Unused is a document (or List item) of the folder source that the
// controller does not use, and why.
type Unused struct {
	File string
	// Doc is the document's index in the file, from 0; Item the index in
	// a List's items, or -1.
	Doc, Item int
	// APIVersion, Kind and Name ("namespace/name") as far as the document
	// says them.
	APIVersion, Kind, Name string
	Reason                 string
	Err                    error
	// PreviousInForce is set on a rejection in a file whose last good
	// version stays in force; without it nothing of the file is used.
	PreviousInForce bool
}

// Rejected reports whether the document was meant for the controller and
// is wrong (rather than of another API).
func (u Unused) Rejected() bool { return u.Reason != ReasonOtherAPI }

// String names the file, the document and the object, and says why.
func (u Unused) String() string {
	var b strings.Builder
	if u.File != "" {
		b.WriteString(u.File + ": ")
	}
	b.WriteString(u.Err.Error())
	if obj := strings.TrimSpace(u.Kind + " " + u.Name); obj != "" {
		fmt.Fprintf(&b, " (%s)", obj)
	}
	switch {
	case !u.Rejected():
	case u.PreviousInForce:
		b.WriteString("; the file's last good version stays in force")
	default:
		b.WriteString("; nothing of the file is in force")
	}
	return b.String()
}

// unusedError is why addObject did not use an object.
type unusedError struct {
	reason string
	err    error
}

func (e *unusedError) Error() string { return e.err.Error() }
func (e *unusedError) Unwrap() error { return e.err }

// ownGroup reports whether group is one of Rosetta's or Aeraki's (the
// MetaProtocol groups, and the groups of the translators' kinds): any kind
// in them is meant for the controller.
func ownGroup(group string) bool {
	if group == v1alpha1.GroupName || group == "metaprotocol.aeraki.io" {
		return true
	}
	for _, k := range registeredKinds() {
		if slices.Contains(k.groups(), group) {
			return true
		}
	}
	return false
}

// readKinds maps each kind the controller reads to its groups, sorted.
func readKinds() map[string][]string {
	out := map[string][]string{}
	var keys []string
	for k := range decoders {
		keys = append(keys, k)
	}
	for _, k := range registeredKinds() {
		for _, g := range k.groups() {
			keys = append(keys, g+"/"+k.Kind)
		}
	}
	for _, k := range keys {
		i := strings.LastIndex(k, "/")
		out[k[i+1:]] = append(out[k[i+1:]], k[:i])
	}
	for _, gs := range out {
		sort.Strings(gs)
	}
	return out
}

// unusedKind says why an object of group and kind, which the controller
// does not read, is not used. Rejected: a misspelt kind or group; a kind of
// Rosetta's or Aeraki's groups the controller does not read; one of their
// kinds in another group. Anything else belongs to another API (a
// Knative Service is not a Kubernetes one).
func unusedKind(group, kind string) error {
	kinds := readKinds()
	if groups, ok := kinds[kind]; ok && (ownKind(groups) || nearest(group, groups, 2) != "") {
		return &unusedError{ReasonUnknownGroup, fmt.Errorf("%s is read from group %s, not from group %q",
			kind, strings.Join(quoteAll(groups), " or "), group)}
	}
	if near := nearest(kind, sortedKeys(kinds), kindDistance(kind)); near != "" && near != kind {
		return &unusedError{ReasonUnknownKind, fmt.Errorf("unknown kind %q; did you mean %s?", kind, near)}
	}
	if ownGroup(group) {
		return &unusedError{ReasonUnknownKind, fmt.Errorf("group %s has no kind %q the controller reads", group, kind)}
	}
	if strings.Contains(group, ".") {
		if near := nearest(group, allGroups(kinds), 2); near != "" && near != group {
			return &unusedError{ReasonUnknownGroup, fmt.Errorf("unknown group %q; did you mean %s?", group, near)}
		}
	}
	return &unusedError{ReasonOtherAPI, fmt.Errorf("%s of group %q is not read by the controller", kind, group)}
}

// ownKind reports whether a kind read from groups is Rosetta's or Aeraki's.
func ownKind(groups []string) bool {
	return slices.ContainsFunc(groups, ownGroup)
}

// kindDistance is how many edits still make a misspelling: one for short
// names, where two would match real kinds ("Node" is two from "Pod").
func kindDistance(kind string) int {
	if len(kind) < 8 {
		return 1
	}
	return 2
}

// nearest is the candidate fewest edits from s (ignoring case), if at
// most within; "" when none is.
func nearest(s string, candidates []string, within int) string {
	best, bestD := "", within+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func allGroups(kinds map[string][]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, gs := range kinds {
		for _, g := range gs {
			if g != "" && !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	sort.Strings(out)
	return out
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// rejected lists the rejections among unused.
func rejected(unused []Unused) []Unused {
	var out []Unused
	for _, u := range unused {
		if u.Rejected() {
			out = append(out, u)
		}
	}
	return out
}
