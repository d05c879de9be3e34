package redis

import (
	"bytes"
	"strconv"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// session is one client connection's state. Handle runs on the connection's
// reader goroutine, so fields Handle alone touches need no lock.
type session struct {
	opt    *options
	resp3  bool
	authed bool
	name   []byte
	// tx is the pinned connection of a transaction (WATCH or MULTI), nil
	// outside one; multi says MULTI was sent.
	tx    *pinned
	multi bool
	// txAborted: a command of the open transaction was refused, so EXEC
	// must fail as a whole.
	txAborted bool
	// ps is the client's subscription connection, nil without one; subs
	// is what it is subscribed to (see pubsub.go).
	ps   *subscription
	subs subs
	// blocked are the connections of blocking commands still waiting.
	blocked pinnedSet
}

// reply is how Handle answers one request.
type reply = func(*codec.Message)

func (c *redisCodec) session() *session {
	if c.sess == nil {
		c.sess = &session{opt: c.opt, authed: c.opt.password == ""}
	}
	return c.sess
}

// Handle implements codec.Handler: local commands, transactions and blocking
// commands on pinned connections, multi-key commands split per destination,
// and everything else routed by its key.
func (c *redisCodec) Handle(req *codec.Message, up codec.Upstream, r codec.Replier) {
	cm, ok := req.Private.(*command)
	if !ok {
		r.Reply(errorAnswer(req, codec.StatusBadRequest, "rosetta: not a command"))
		return
	}
	s := c.session()
	if !s.authed && cm.name != "AUTH" && cm.name != "HELLO" && cm.name != "QUIT" && cm.name != "RESET" {
		r.Reply(answer(appendError(nil, "NOAUTH Authentication required.")))
		return
	}
	if s.ps != nil && s.ps.dead.Load() {
		s.dropSubscription()
	}
	switch {
	case s.ps != nil && !s.resp3:
		s.subscribed(req, cm, r.Reply)
		return
	case cm.name == "RESET":
		s.reset(r.Reply)
		return
	case cm.spec != nil && cm.spec.flags&flagPubSub != 0:
		s.pubsub(req, cm, up, r.Reply)
		return
	}
	if s.tx != nil || s.multi || (cm.spec != nil && cm.spec.flags&flagPinned != 0) {
		s.transaction(req, cm, up, r.Reply)
		return
	}
	if s.local(cm, r.Reply) {
		return
	}
	switch {
	case cm.spec != nil && cm.spec.flags&flagRefused != 0:
		r.Reply(errorAnswer(req, codec.StatusBadRequest, refusedReason(cm.name)))
	case cm.blocking():
		s.blocking(req, up, r.Reply)
	case cm.spec != nil && cm.spec.flags&flagSplit != 0 && len(cm.keyIndexes(2)) > 1:
		s.split(req, cm, up, r.Reply)
	case cm.spec != nil && cm.spec.flags&flagWhole != 0:
		s.wholeServer(req, cm, up, r.Reply)
	default:
		s.send(req, up, r)
	}
}

func refusedReason(name string) string {
	return "rosetta: " + name + " is not supported through the proxy"
}

// send routes one request: by the route table (proxy mode), or to the node
// that owns its slot (cluster mode).
func (s *session) send(req *codec.Message, up codec.Upstream, r codec.Replier) {
	if s.opt.cluster {
		clusterSend(req, up, s.opt.readReplica, func(resp *codec.Message, st codec.Status, detail string) {
			r.Reply(outcome(req, resp, st, detail))
		})
		return
	}
	up.Forward(req, func(resp *codec.Message, st codec.Status, detail string) {
		r.Reply(outcome(req, resp, st, detail))
	})
}

// outcome is the answer for an upstream outcome: the server's answer, or the
// proxy's error.
func outcome(req, resp *codec.Message, st codec.Status, detail string) *codec.Message {
	if resp != nil {
		return resp
	}
	return errorAnswer(req, st, detail)
}

// newRequest builds a request message the proxy sends on its own. Its
// arguments may come from a client's command, which the listener's limit
// let through however large, so the built frame is held to its own length,
// not to a limit.
func newRequest(args ...[]byte) *codec.Message {
	frame := appendCommand(nil, args...)
	m, err := decodeRequest(frame, len(frame))
	if err != nil { // appendCommand writes valid commands
		panic("redis: a built command does not decode: " + err.Error())
	}
	return m
}

func strArgs(args ...string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

// local answers the commands the proxy serves itself; it reports whether
// cm was one of them.
func (s *session) local(cm *command, done reply) bool {
	var out []byte
	switch cm.name {
	case "AUTH":
		out = s.auth(cm.args[1:])
	case "HELLO":
		out = s.hello(cm.args[1:])
	case "PING":
		switch len(cm.args) {
		case 1:
			out = append(out, "+PONG\r\n"...)
		case 2:
			out = appendBulk(out, cm.args[1])
		default:
			out = wrongArgs("ping")
		}
	case "ECHO":
		if len(cm.args) != 2 {
			out = wrongArgs("echo")
		} else {
			out = appendBulk(out, cm.args[1])
		}
	case "QUIT":
		out = append(out, "+OK\r\n"...)
	case "SELECT":
		if len(cm.args) == 2 && string(cm.args[1]) == "0" {
			out = append(out, "+OK\r\n"...)
		} else {
			out = appendError(out, "ERR rosetta: only database 0 is served through the proxy")
		}
	case "CLIENT":
		out = s.client(cm.args[1:])
	case "COMMAND":
		out = s.commandInfo(cm.args[1:])
	case "CONFIG":
		if len(cm.args) >= 2 && bytes.EqualFold(cm.args[1], []byte("GET")) {
			out = s.configGet(cm.args[2:])
		} else {
			out = appendError(out, "ERR rosetta: only CONFIG GET is served through the proxy")
		}
	default:
		return false
	}
	done(answer(out))
	return true
}

func wrongArgs(cmd string) []byte {
	return appendError(nil, "ERR wrong number of arguments for '"+cmd+"' command")
}

// auth checks AUTH [username] password against the listener's options.
func (s *session) auth(args [][]byte) []byte {
	if len(args) < 1 || len(args) > 2 {
		return wrongArgs("auth")
	}
	if s.opt.password == "" {
		return appendError(nil, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	}
	user, pass := s.opt.username, args[len(args)-1]
	if len(args) == 2 {
		user = string(args[0])
	}
	if user != s.opt.username || string(pass) != s.opt.password {
		return appendError(nil, "WRONGPASS invalid username-password pair or user is disabled.")
	}
	s.authed = true
	return append([]byte(nil), "+OK\r\n"...)
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]] in the
// protocol version it switches to.
func (s *session) hello(args [][]byte) []byte {
	proto := 2
	if s.resp3 {
		proto = 3
	}
	if len(args) > 0 {
		v, err := strconv.Atoi(string(args[0]))
		if err != nil {
			return appendError(nil, "ERR Protocol version is not an integer or out of range")
		}
		if v != 2 && v != 3 {
			return appendError(nil, "NOPROTO unsupported protocol version")
		}
		proto = v
		args = args[1:]
	}
	for len(args) > 0 {
		switch {
		case bytes.EqualFold(args[0], []byte("AUTH")) && len(args) >= 3:
			if out := s.auth(args[1:3]); out[0] == typeError {
				return out
			}
			args = args[3:]
		case bytes.EqualFold(args[0], []byte("SETNAME")) && len(args) >= 2:
			s.name = append([]byte(nil), args[1]...)
			args = args[2:]
		default:
			return appendError(nil, "ERR Syntax error in HELLO option '"+string(args[0])+"'")
		}
	}
	if !s.authed {
		return appendError(nil, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
	}
	s.resp3 = proto == 3
	if s.ps != nil {
		s.ps.resp3.Store(s.resp3)
	}
	mode := "standalone"
	if s.opt.cluster {
		mode = "cluster"
	}
	out := appendMapHeader(nil, 7, s.resp3)
	out = appendBulkString(out, "server")
	out = appendBulkString(out, "redis")
	out = appendBulkString(out, "version")
	out = appendBulkString(out, "7.0.0")
	out = appendBulkString(out, "proto")
	out = appendInt(out, int64(proto))
	out = appendBulkString(out, "id")
	out = appendInt(out, 1)
	out = appendBulkString(out, "mode")
	out = appendBulkString(out, mode)
	out = appendBulkString(out, "role")
	out = appendBulkString(out, "master")
	out = appendBulkString(out, "modules")
	return appendHeader(out, typeArray, 0)
}

// client answers the CLIENT sub-commands libraries send on connect.
func (s *session) client(args [][]byte) []byte {
	if len(args) == 0 {
		return wrongArgs("client")
	}
	switch string(bytes.ToUpper(args[0])) {
	case "SETINFO":
		if len(args) != 3 {
			return wrongArgs("client|setinfo")
		}
		return append([]byte(nil), "+OK\r\n"...)
	case "SETNAME":
		if len(args) != 2 {
			return wrongArgs("client|setname")
		}
		s.name = append([]byte(nil), args[1]...)
		return append([]byte(nil), "+OK\r\n"...)
	case "GETNAME":
		if len(s.name) == 0 {
			return appendNull(nil, s.resp3)
		}
		return appendBulk(nil, s.name)
	case "ID":
		return appendInt(nil, 1)
	}
	return appendError(nil, "ERR rosetta: CLIENT "+string(args[0])+" is not supported through the proxy")
}

// commandInfo answers COMMAND and its sub-commands with what redis-cli needs
// to run: an empty description, which makes it fall back to plain hints.
func (s *session) commandInfo(args [][]byte) []byte {
	if len(args) == 0 {
		return appendHeader(nil, typeArray, 0)
	}
	switch string(bytes.ToUpper(args[0])) {
	case "COUNT":
		return appendInt(nil, int64(len(commands)))
	case "DOCS":
		return appendMapHeader(nil, 0, s.resp3)
	case "INFO":
		out := appendHeader(nil, typeArray, len(args)-1)
		for range args[1:] {
			out = appendNull(out, s.resp3)
		}
		return out
	}
	return appendError(nil, "ERR rosetta: COMMAND "+string(args[0])+" is not supported through the proxy")
}

// proxyConfig is what CONFIG GET reports: the settings clients (such as
// redis-benchmark) look at to learn how a server persists.
var proxyConfig = [][2]string{{"save", ""}, {"appendonly", "no"}, {"databases", "1"}}

func (s *session) configGet(patterns [][]byte) []byte {
	var pairs [][2]string
	for _, kv := range proxyConfig {
		for _, p := range patterns {
			if matchGlob(string(p), kv[0]) {
				pairs = append(pairs, kv)
				break
			}
		}
	}
	out := appendMapHeader(nil, len(pairs), s.resp3)
	for _, kv := range pairs {
		out = appendBulkString(out, kv[0])
		out = appendBulkString(out, kv[1])
	}
	return out
}

// matchGlob matches name against a pattern with '*' wildcards only, which is
// all CONFIG GET callers use.
func matchGlob(pattern, name string) bool {
	star := bytes.IndexByte([]byte(pattern), '*')
	if star < 0 {
		return bytes.EqualFold([]byte(pattern), []byte(name))
	}
	pre, rest := pattern[:star], pattern[star+1:]
	if len(name) < len(pre) || !bytes.EqualFold([]byte(name[:len(pre)]), []byte(pre)) {
		return false
	}
	name = name[len(pre):]
	for i := 0; i <= len(name); i++ {
		if matchGlob(rest, name[i:]) {
			return true
		}
	}
	return false
}

// splitPart is one destination's share of a multi-key command: the
// indexes of its keys in the original command, in order.
type splitPart struct {
	keys []int
}

// split sends a multi-key command as one command per destination and merges
// the answers in key order. A destination is a route in proxy mode and a slot
// in cluster mode, so each part matches exactly what its keys would match
// alone.
func (s *session) split(req *codec.Message, cm *command, up codec.Upstream, done reply) {
	keys := cm.keyIndexes(-1)
	var parts []*splitPart
	index := map[string]int{}
	owner := make([]int, len(cm.args)) // the part of each key, by argument index
	for _, k := range keys {
		dest := s.destination(cm.args[k], up)
		i, ok := index[dest]
		if !ok {
			i = len(parts)
			index[dest] = i
			parts = append(parts, &splitPart{})
		}
		parts[i].keys = append(parts[i].keys, k)
		owner[k] = i
	}
	if len(parts) == 1 {
		s.send(req, up, codec.ReplyFunc(done))
		return
	}
	g := newGather(cm.name, len(parts), s.opt.maxMerged, func(answers []*codec.Message) *codec.Message {
		return mergeSplit(cm, keys, owner, parts, answers)
	}, done)
	step := cm.spec.step
	for i, p := range parts {
		args := [][]byte{cm.args[0]}
		for _, k := range p.keys {
			args = append(args, cm.args[k:k+step]...)
		}
		s.send(newRequest(args...), up, g.part(i))
	}
}

// destination names where a key goes: the route, its cluster and the
// server the balancer picks for the key (in a pool hashed by key, the one
// that holds it), or the slot in cluster mode. A part's first key then
// hashes to the part's server, so Forward sends the part there.
func (s *session) destination(key []byte, up codec.Upstream) string {
	if s.opt.cluster {
		return strconv.Itoa(Slot(string(key)))
	}
	ch, ok := up.Pick(newRequest([]byte("GET"), key))
	if !ok {
		return ""
	}
	return ch.Route + "\x00" + ch.Cluster + "\x00" + ch.Addr
}

// mergeSplit joins the parts' answers: MGET's values in key order, the sum
// of the counts of DEL, UNLINK, EXISTS and TOUCH, and OK for MSET. The first
// error any part met is the answer.
func mergeSplit(cm *command, keys, owner []int, parts []*splitPart, answers []*codec.Message) *codec.Message {
	if e := firstError(answers); e != nil {
		return e
	}
	switch cm.name {
	case "MGET":
		return mergeMGET(keys, owner, parts, answers)
	case "MSET":
		return answer([]byte("+OK\r\n"))
	}
	return sumCounts(cm.name, answers)
}

// mergeMGET puts each key's value, taken from its part's answer as the
// server wrote it, in key order.
func mergeMGET(keys, owner []int, parts []*splitPart, answers []*codec.Message) *codec.Message {
	values := make([]*elements, len(answers))
	for i, a := range answers {
		e, ok := arrayElements(a.Raw)
		if !ok || e.left != len(parts[i].keys) {
			return badAnswer("MGET", "the wrong number of values")
		}
		values[i] = e
	}
	out := appendHeader(make([]byte, 0, heldBytes(answers)+16), typeArray, len(keys))
	for _, k := range keys {
		v, ok := values[owner[k]].next()
		if !ok {
			return badAnswer("MGET", "a value that does not parse")
		}
		out = append(out, v...)
	}
	return answer(out)
}

// Close implements codec.Closer: the client went away, so its transaction's
// pinned connection and its subscription go too (a BLPOP with no timeout or
// a WATCH would otherwise hold a server connection for a client that is
// gone).
func (c *redisCodec) Close() {
	s := c.sess
	if s == nil {
		return
	}
	s.blocked.closeAll("the client went away")
	if s.tx != nil {
		s.tx.close("the client went away")
		s.tx = nil
	}
	if s.ps != nil {
		s.ps.abandon()
		s.dropSubscription()
	}
}

var _ codec.Closer = (*redisCodec)(nil)
