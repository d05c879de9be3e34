package controller

import "strings"

// redisReadCommands are the commands a mirror with excludeReadCommands
// skips: the commands protocols/redis marks read-only in its command table
// (including PUBLISH, which a mirror must not send twice). Keep it in step
// with the flagRead entries of protocols/redis/commands.go: the codec does
// not export its table, and the controller does not link codecs.
var redisReadCommands = []string{
	"GET", "GETRANGE", "STRLEN", "TTL", "PTTL", "TYPE", "EXPIRETIME", "PEXPIRETIME",
	"HGET", "HGETALL", "HMGET", "HKEYS", "HVALS", "HLEN", "HEXISTS", "HSTRLEN", "HRANDFIELD", "HSCAN",
	"LRANGE", "LLEN", "LINDEX", "LPOS", "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SRANDMEMBER", "SSCAN",
	"ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZCARD",
	"ZSCORE", "ZMSCORE", "ZRANK", "ZREVRANK", "ZCOUNT", "ZLEXCOUNT", "ZSCAN", "ZRANDMEMBER",
	"GETBIT", "BITCOUNT", "BITPOS", "XRANGE", "XREVRANGE", "XLEN", "XPENDING", "XINFO", "PFCOUNT",
	"GEODIST", "GEOHASH", "GEOPOS", "GEOSEARCH", "DUMP", "OBJECT", "SUBSTR", "LCS", "SORT_RO",
	"MGET", "EXISTS", "TOUCH", "EVAL_RO", "EVALSHA_RO", "FCALL_RO", "XREAD", "PUBLISH",
}

var redisReadSet = func() map[string]bool {
	m := make(map[string]bool, len(redisReadCommands))
	for _, c := range redisReadCommands {
		m[c] = true
	}
	return m
}()

// commandRegex matches any of the (upper-case) command names; the
// names are letters, digits, '_' and '-' (checked by Validate), so they
// need no escaping.
func commandRegex(cmds []string) string {
	return strings.Join(cmds, "|")
}
