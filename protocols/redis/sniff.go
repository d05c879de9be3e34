package redis

// Sniff implements codec.Sniffer, for listeners that tell protocols apart by
// a connection's first bytes. It matches a RESP command, an array of bulk
// strings, and is sure once it has seen "*<count>\r\n$" (a count from 1 to
// maxElements, without leading zeros): what every client library, redis-cli
// and redis-benchmark send. Until then it cannot tell (false, false), and
// any other byte on the way makes it sure of no match.
//
// Inline commands (a line of words: "PING\r\n", what a telnet user types)
// are not recognised: Sniff is sure they are not Redis. A line of text is
// what many protocols open with (HTTP's "GET / HTTP/1.1" has the shape of
// an inline GET), so claiming one would take other protocols' connections;
// a listener that must serve inline commands names the redis codec rather
// than sniffing. No binary protocol of the mesh opens with '*' (0x2a):
// Dubbo's magic is 0xdabb, tRPC's 0x0930, Thrift's binary and compact
// messages start with 0x80 or 0x82, and a framed or THeader Thrift message
// with its length, whose first byte 0x2a would claim a frame of at least
// 704 MiB.
func (c *redisCodec) Sniff(prefix []byte) (match, sure bool) {
	if len(prefix) == 0 {
		return false, false
	}
	if prefix[0] != typeArray {
		return false, true
	}
	count := int64(0)
	for i := 1; i < len(prefix); i++ {
		b := prefix[i]
		switch {
		case b >= '0' && b <= '9':
			if i == 1 && b == '0' {
				return false, true // an empty array (or leading zeros) opens no command
			}
			count = count*10 + int64(b-'0')
			if count > maxElements {
				return false, true
			}
		case b == '\r' && i > 1:
			// The count ends: "\n$" must follow.
			rest := prefix[i+1:]
			if len(rest) > 0 && rest[0] != '\n' || len(rest) > 1 && rest[1] != typeBulk {
				return false, true
			}
			return len(rest) > 1, len(rest) > 1
		default:
			return false, true
		}
	}
	return false, false
}
