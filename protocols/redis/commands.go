package redis

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
)

// cmdSpec says where a command's keys are and how the proxy treats it.
type cmdSpec struct {
	name string
	// first is the index of the first key (0: no keys); last is the index of
	// the last one, negative counting from the end (-1: the last argument);
	// step is the distance between keys.
	first, last, step int
	flags             cmdFlag
}

type cmdFlag uint16

const (
	// flagRead: the command does not write (mirrors may skip it).
	flagRead cmdFlag = 1 << iota
	// flagBlocking: the server may hold the answer; needs a pinned connection.
	flagBlocking
	// flagSplit: a multi-key command the proxy splits per destination.
	flagSplit
	// flagNumKeys: keys follow a numkeys argument at first-1 (EVAL, ...).
	flagNumKeys
	// flagStreams: keys follow the STREAMS argument (XREAD, XREADGROUP).
	flagStreams
	// flagPinned: the command belongs to a transaction or a subscription.
	flagPinned
	// flagRefused: the proxy cannot serve it safely; it answers an error.
	flagRefused
	// flagPubSub: (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE, served on the
	// client's subscription connection (pubsub.go).
	flagPubSub
	// flagChannel: the "keys" are channel names: they route the command
	// but route mutations never rewrite them, so a PUBLISH reaches the
	// channel a subscriber named.
	flagChannel
	// flagWhole: no keys, and it acts on a whole server's data or state;
	// fanout.go serves it on every server the routes reach, or refuses it.
	flagWhole
)

func spec(name string, first, last, step int, flags cmdFlag) *cmdSpec {
	return &cmdSpec{name: name, first: first, last: last, step: step, flags: flags}
}

// commands is the table of commands whose keys the proxy must know. Other
// commands are passed through with their first argument as the key.
var commands = func() map[string]*cmdSpec {
	m := map[string]*cmdSpec{}
	add := func(s *cmdSpec) { m[s.name] = s }
	// Single-key reads and writes (most of Redis) default to key = argument 1;
	// they are listed when they read only, for mirroring.
	for _, n := range []string{"GET", "GETRANGE", "STRLEN", "TTL", "PTTL", "TYPE", "EXPIRETIME", "PEXPIRETIME",
		"HGET", "HGETALL", "HMGET", "HKEYS", "HVALS", "HLEN", "HEXISTS", "HSTRLEN", "HRANDFIELD", "HSCAN",
		"LRANGE", "LLEN", "LINDEX", "LPOS", "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SRANDMEMBER", "SSCAN",
		"ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZCARD",
		"ZSCORE", "ZMSCORE", "ZRANK", "ZREVRANK", "ZCOUNT", "ZLEXCOUNT", "ZSCAN", "ZRANDMEMBER",
		"GETBIT", "BITCOUNT", "BITPOS", "XRANGE", "XREVRANGE", "XLEN", "XPENDING", "XINFO", "PFCOUNT",
		"GEODIST", "GEOHASH", "GEOPOS", "GEOSEARCH", "DUMP", "OBJECT", "SUBSTR", "LCS", "SORT_RO"} {
		add(spec(n, 1, 1, 1, flagRead))
	}
	// The keys of OBJECT and XINFO come after a sub-command.
	m["OBJECT"].first, m["OBJECT"].last = 2, 2
	m["XINFO"].first, m["XINFO"].last = 2, 2
	add(spec("MGET", 1, -1, 1, flagRead|flagSplit))
	add(spec("EXISTS", 1, -1, 1, flagRead|flagSplit))
	add(spec("TOUCH", 1, -1, 1, flagRead|flagSplit))
	add(spec("MSET", 1, -1, 2, flagSplit))
	add(spec("DEL", 1, -1, 1, flagSplit))
	add(spec("UNLINK", 1, -1, 1, flagSplit))
	add(spec("EVAL", 3, 0, 1, flagNumKeys))
	add(spec("EVALSHA", 3, 0, 1, flagNumKeys))
	add(spec("EVAL_RO", 3, 0, 1, flagNumKeys|flagRead))
	add(spec("EVALSHA_RO", 3, 0, 1, flagNumKeys|flagRead))
	add(spec("FCALL", 3, 0, 1, flagNumKeys))
	add(spec("FCALL_RO", 3, 0, 1, flagNumKeys|flagRead))
	for _, n := range []string{"BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"} {
		add(spec(n, 1, -2, 1, flagBlocking))
	}
	add(spec("BRPOPLPUSH", 1, 2, 1, flagBlocking))
	add(spec("BLMOVE", 1, 2, 1, flagBlocking))
	add(spec("BLMPOP", 3, 0, 1, flagBlocking|flagNumKeys))
	add(spec("BZMPOP", 3, 0, 1, flagBlocking|flagNumKeys))
	add(spec("XREAD", 0, 0, 1, flagStreams|flagRead))
	add(spec("XREADGROUP", 0, 0, 1, flagStreams))
	add(spec("WAIT", 0, 0, 0, flagBlocking))
	for _, n := range []string{"MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH"} {
		add(spec(n, 0, 0, 0, flagPinned))
	}
	m["WATCH"].first, m["WATCH"].last, m["WATCH"].step = 1, -1, 1
	// Subscriptions and PUBLISH go where their first channel's route points.
	for _, n := range []string{"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"} {
		add(spec(n, 1, -1, 1, flagPubSub|flagChannel))
	}
	for _, n := range []string{"UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"} {
		add(spec(n, 0, 0, 0, flagPubSub))
	}
	add(spec("PUBLISH", 1, 1, 1, flagRead|flagChannel)) // read: a mirror must not publish twice
	add(spec("SPUBLISH", 1, 1, 1, flagChannel))
	for _, n := range []string{"MONITOR", "SYNC", "PSYNC", "CLIENT", "MIGRATE", "SHUTDOWN", "REPLICAOF", "SLAVEOF", "FAILOVER", "DEBUG"} {
		add(spec(n, 0, 0, 0, flagRefused))
	}
	// Keyless commands go to the catch-all route (or any node of a cluster),
	// except those flagWhole marks below.
	for _, n := range []string{"PING", "ECHO", "INFO", "DBSIZE", "TIME", "LASTSAVE", "RANDOMKEY", "KEYS", "SCAN",
		"FLUSHDB", "FLUSHALL", "SCRIPT", "FUNCTION", "CONFIG", "COMMAND", "CLUSTER", "READONLY", "READWRITE",
		"PUBSUB", "MEMORY", "LATENCY", "SLOWLOG", "ROLE", "LOLWUT", "SAVE", "BGSAVE", "BGREWRITEAOF",
		"SWAPDB", "AUTH", "HELLO", "SELECT", "QUIT", "RESET", "ASKING", "ACL", "MODULE"} {
		if m[n] == nil {
			add(spec(n, 0, 0, 0, 0))
		}
	}
	// An answer from one server would pass for all of them (fanout.go).
	for _, n := range []string{"FLUSHALL", "FLUSHDB", "DBSIZE", "KEYS", "SCAN", "RANDOMKEY", "INFO", "LASTSAVE",
		"SAVE", "BGSAVE", "BGREWRITEAOF", "SCRIPT", "FUNCTION", "SLOWLOG", "LATENCY", "ROLE", "ACL", "MODULE"} {
		m[n].flags |= flagWhole
	}
	return m
}()

// lookup finds a command by its name in any case; it returns the upper-case
// name, without allocating for commands in the table.
func lookup(name []byte) (*cmdSpec, string) {
	var buf [24]byte
	if len(name) <= len(buf) {
		up := buf[:len(name)]
		for i, c := range name {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			up[i] = c
		}
		if s, ok := commands[string(up)]; ok {
			return s, s.name
		}
		return nil, string(up)
	}
	return nil, strings.ToUpper(string(name))
}

// firstKey returns the index of the command's first key, 0 when it has none.
// The common shapes are answered without building the key list.
func (cm *command) firstKey() int {
	s := cm.spec
	switch {
	case s == nil:
		if len(cm.args) > 1 {
			return 1
		}
		return 0
	case s.flags&(flagNumKeys|flagStreams) == 0:
		last := s.last
		if last < 0 {
			last += len(cm.args)
		}
		if s.first > 0 && s.first <= last && s.first < len(cm.args) {
			return s.first
		}
		return 0
	}
	keys := cm.keyIndexes(1)
	if len(keys) == 0 {
		return 0
	}
	return keys[0]
}

// keyIndexes lists the indexes of the command's keys (at most max; max < 0:
// all of them).
func (cm *command) keyIndexes(max int) []int {
	n := len(cm.args)
	s := cm.spec
	if s == nil { // unknown: the first argument is the key, as in most commands
		if n > 1 {
			return []int{1}
		}
		return nil
	}
	var out []int
	add := func(i int) bool {
		out = append(out, i)
		return max < 0 || len(out) < max
	}
	switch {
	case s.flags&flagNumKeys != 0:
		k, err := strconv.Atoi(string(cm.argAt(s.first - 1)))
		if err != nil || k <= 0 {
			return nil
		}
		for i := s.first; i < s.first+k && i < n; i++ {
			if !add(i) {
				break
			}
		}
	case s.flags&flagStreams != 0:
		start := 0
		for i := 1; i < n; i++ {
			if bytes.EqualFold(cm.args[i], []byte("STREAMS")) {
				start = i + 1
				break
			}
		}
		if start == 0 {
			return nil
		}
		for i := start; i < start+(n-start)/2; i++ {
			if !add(i) {
				break
			}
		}
	case s.first > 0:
		last := s.last
		if last < 0 {
			last += n
		}
		for i := s.first; i <= last && i < n; i += s.step {
			if !add(i) {
				break
			}
		}
	}
	return out
}

func (cm *command) argAt(i int) []byte {
	if i < 0 || i >= len(cm.args) {
		return nil
	}
	return cm.args[i]
}

// blocking says whether the server may hold the answer (XREAD only with BLOCK).
func (cm *command) blocking() bool {
	if cm.spec == nil {
		return false
	}
	if cm.spec.flags&flagBlocking != 0 {
		return true
	}
	if cm.spec.flags&flagStreams != 0 {
		for _, a := range cm.args[1:] {
			if bytes.EqualFold(a, []byte("BLOCK")) {
				return true
			}
		}
	}
	return false
}

// ReadCommands lists the commands the table marks read-only, sorted: what a
// control plane may match to keep reads out of a mirror.
func ReadCommands() []string {
	var out []string
	for name, c := range commands {
		if c.flags&flagRead != 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
