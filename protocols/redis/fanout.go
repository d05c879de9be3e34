package redis

import (
	"bytes"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// fanKind is how the proxy serves a command without keys that acts on a
// whole server (flagWhole) when the routes reach several servers. With one
// server the command simply goes there.
type fanKind uint8

const (
	// fanOne: refused; an answer from one server would pass for all of
	// them (SCAN's cursor, INFO's figures).
	fanOne fanKind = iota
	// fanSame: sent to every server; the answer when all give the same one
	// (FLUSHALL's OK, SCRIPT LOAD's SHA).
	fanSame
	// fanSum: sent to every server; the sum of the counts (DBSIZE).
	fanSum
	// fanConcat: sent to every server; the arrays joined (KEYS).
	fanConcat
	// fanAny: sent to every server; a key from any that has one (RANDOMKEY).
	fanAny
	// fanAll: sent to every server; 1 in each place only where every
	// server answered 1 (SCRIPT EXISTS).
	fanAll
)

// fanKinds lists the whole-server commands served on several servers, by
// name or by "NAME SUBCOMMAND"; every other flagWhole command is fanOne.
var fanKinds = map[string]fanKind{
	"FLUSHALL": fanSame, "FLUSHDB": fanSame, "SAVE": fanSame, "BGSAVE": fanSame, "BGREWRITEAOF": fanSame,
	"DBSIZE": fanSum, "KEYS": fanConcat, "RANDOMKEY": fanAny,
	"SCRIPT LOAD": fanSame, "SCRIPT FLUSH": fanSame, "SCRIPT EXISTS": fanAll,
	"FUNCTION LOAD": fanSame, "FUNCTION DELETE": fanSame, "FUNCTION FLUSH": fanSame, "FUNCTION RESTORE": fanSame,
}

func fanKindOf(cm *command) fanKind {
	if k, ok := fanKinds[cm.name]; ok {
		return k
	}
	if len(cm.args) > 1 {
		if k, ok := fanKinds[cm.name+" "+strings.ToUpper(string(cm.args[1]))]; ok {
			return k
		}
	}
	return fanOne
}

// wholeServer serves a whole-server command: on the one server the routes
// reach, on every one of them with the answers merged as one server would
// answer, or refused.
func (s *session) wholeServer(req *codec.Message, cm *command, up codec.Upstream, done reply) {
	s.reach(up, cm.name, func(cluster string, addrs []string, fail *codec.Message) {
		kind := fanKindOf(cm)
		switch {
		case fail != nil:
			done(fail)
		case len(addrs) == 1 && !s.opt.cluster:
			s.send(req, up, codec.ReplyFunc(done)) // Forward keeps the route's policies
		case len(addrs) == 1:
			up.SendTo(cluster, addrs[0], req, func(resp *codec.Message, st codec.Status, detail string) {
				done(outcome(req, resp, st, detail))
			})
		case kind == fanOne:
			done(answer(appendError(nil, "ERR rosetta: "+cm.name+" is served only when the routes reach one server; they reach "+
				strconv.Itoa(len(addrs)))))
		default:
			s.fanOut(cm, kind, cluster, addrs, up, done)
		}
	})
}

// fanOut sends the command to every server and merges their answers.
func (s *session) fanOut(cm *command, kind fanKind, cluster string, addrs []string, up codec.Upstream, done reply) {
	g := newGather(cm.name, len(addrs), s.opt.maxMerged, func(parts []*codec.Message) *codec.Message {
		return mergeWhole(kind, cm.name, parts)
	}, done)
	for i, addr := range addrs {
		part, r := newRequest(cm.args...), g.part(i)
		up.SendTo(cluster, addr, part, func(resp *codec.Message, st codec.Status, detail string) {
			r.Reply(outcome(part, resp, st, detail))
		})
	}
}

// reach finds every server the routes reach and gives fn their cluster and
// addresses, or the error answer. codec.Upstream does not list routes, so
// the proxy can name every server only when the routes' first one has no
// condition: every request then takes it, and the servers of its cluster
// (proxy mode: the endpoints; cluster mode: the primaries of the slot map)
// are all there is. Otherwise it refuses rather than guess.
func (s *session) reach(up codec.Upstream, name string, fn func(cluster string, addrs []string, fail *codec.Message)) {
	cluster, fail := soleCluster(up, name)
	if fail != nil {
		fn("", nil, fail)
		return
	}
	eps := up.Endpoints(cluster)
	if len(eps) == 0 {
		fn("", nil, errorAnswer(nil, codec.StatusNoUpstream, "rosetta: no endpoint in cluster "+cluster))
		return
	}
	if !s.opt.cluster {
		fn(cluster, eps, nil)
		return
	}
	slotMapFor(up, cluster, eps).primaries(up, func(addrs []string, err error) {
		switch {
		case err != nil:
			fn("", nil, errorAnswer(nil, codec.StatusNoUpstream, "rosetta: "+err.Error()))
		case len(addrs) == 0: // CLUSTER SLOTS listed no slot (a cluster being set up)
			fn("", nil, errorAnswer(nil, codec.StatusNoUpstream, "rosetta: the slot map of cluster "+cluster+" lists no node"))
		default:
			fn(cluster, addrs, nil)
		}
	})
}

// oneServerNow says, without waiting, whether the routes reach exactly one
// server: what a whole-server command inside a transaction needs, since it
// runs on the transaction's connection. In cluster mode a slot map not yet
// loaded counts as not known.
func (s *session) oneServerNow(up codec.Upstream) bool {
	cluster, fail := soleCluster(up, "")
	if fail != nil {
		return false
	}
	eps := up.Endpoints(cluster)
	if !s.opt.cluster || len(eps) == 0 {
		return len(eps) == 1
	}
	return len(slotMapFor(up, cluster, eps).primariesNow()) == 1
}

// attrProbe is a request without attributes that notes whether routing
// asked it for one.
type attrProbe struct{ asked bool }

func (p *attrProbe) Get(string) (string, bool) {
	p.asked = true
	return "", false
}

func (p *attrProbe) Range(func(string, string) bool) { p.asked = true }

// soleCluster is the cluster of the routes' first route when it has no
// condition, so that it takes every request; else the refusal. A route
// reached without the request being asked for any attribute met no
// condition on the way: it is the first, and has none.
func soleCluster(up codec.Upstream, name string) (string, *codec.Message) {
	p := &attrProbe{}
	cluster, _, ok := up.Route(&codec.Message{Kind: codec.KindRequest, Attrs: p})
	switch {
	case p.asked:
		return "", answer(appendError(nil, "ERR rosetta: "+name+" acts on whole servers, and the routes send keys to "+
			"more than one place, so the proxy cannot tell every server they reach; send it to the servers directly"))
	case !ok:
		return "", errorAnswer(nil, codec.StatusNoRoute, "rosetta: no route matched the request")
	}
	return cluster, nil
}

// mergeWhole merges the answers of a fanned-out command; the first error
// any server gave is the answer.
func mergeWhole(kind fanKind, name string, parts []*codec.Message) *codec.Message {
	if e := firstError(parts); e != nil {
		return e
	}
	switch kind {
	case fanSum:
		return sumCounts(name, parts)
	case fanConcat:
		return concatArrays(name, parts)
	case fanAny:
		return anyKey(parts)
	case fanAll:
		return allOnes(name, parts)
	}
	return sameAnswer(name, parts)
}

func sameAnswer(name string, parts []*codec.Message) *codec.Message {
	for _, p := range parts[1:] {
		if !bytes.Equal(p.Raw, parts[0].Raw) {
			return answer(appendError(nil, "ERR rosetta: the servers answered "+name+" differently"))
		}
	}
	return parts[0]
}

// concatArrays joins the elements of the parts' arrays, in server order.
func concatArrays(name string, parts []*codec.Message) *codec.Message {
	total, bodies := 0, make([][]byte, len(parts))
	for i, p := range parts {
		e, ok := arrayElements(p.Raw)
		if !ok {
			return badAnswer(name, "something other than an array")
		}
		total += e.left
		bodies[i] = p.Raw[e.pos:]
	}
	out := appendHeader(make([]byte, 0, heldBytes(parts)+16), typeArray, total)
	for _, b := range bodies {
		out = append(out, b...)
	}
	return answer(out)
}

// anyKey picks the answer of a server that has a key at random, so keys of
// every server can come up; a null when none has one.
func anyKey(parts []*codec.Message) *codec.Message {
	var keys []*codec.Message
	for _, p := range parts {
		if len(p.Raw) > 0 && p.Raw[0] == typeBulk && !bytes.HasPrefix(p.Raw, []byte("$-1")) {
			keys = append(keys, p)
		}
	}
	if len(keys) == 0 {
		return parts[0]
	}
	return keys[rand.IntN(len(keys))]
}

// allOnes answers, for each place of the parts' arrays of 0 and 1, 1 only
// when every server answered 1 there.
func allOnes(name string, parts []*codec.Message) *codec.Message {
	lists := make([]*elements, len(parts))
	for i, p := range parts {
		e, ok := arrayElements(p.Raw)
		if !ok || i > 0 && e.left != lists[0].left {
			return badAnswer(name, "arrays of different lengths")
		}
		lists[i] = e
	}
	n := lists[0].left
	out := appendHeader(nil, typeArray, n)
	for range n {
		all := int64(1)
		for _, e := range lists {
			v, ok := e.next()
			if !ok {
				return badAnswer(name, "arrays of different lengths")
			}
			if x, ok := integer(v); !ok || x == 0 {
				all = 0
			}
		}
		out = appendInt(out, all)
	}
	return answer(out)
}

// primaries is every primary of the cluster's slot map, loading it first
// when needed.
func (sm *slotMap) primaries(up codec.Upstream, fn func([]string, error)) {
	sm.owner(up, -1, func(_ string, err error) {
		if err != nil {
			fn(nil, err)
			return
		}
		fn(sm.primariesNow(), nil)
	})
}

// primariesNow is every primary of the loaded slot map, sorted; none before
// the first load.
func (sm *slotMap) primariesNow() []string {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, a := range sm.owners {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}
