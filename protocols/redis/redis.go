// Package redis is Rosetta's codec for Redis (RESP2 and RESP3).
//
// Redis carries no request ids: a server answers in request order, so the
// protocol registers codec.InOrder and the proxy pairs answers first in,
// first out. Requests are arrays of bulk strings (or inline commands);
// answers are any RESP value. Beyond the codec, the package implements
// codec.Handler: it answers connection commands itself (AUTH, HELLO, PING,
// ...), splits multi-key commands across destinations, pins a connection for
// transactions and blocking commands, serves pub/sub on a connection per
// subscribed client, and speaks Redis Cluster. See README.md.
package redis

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync/atomic"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Name is the protocol's registered name.
const Name = "redis"

func init() {
	codec.Register(codec.Protocol{Name: Name, Ordering: codec.InOrder, New: New, MetricAttribute: "command"})
}

// Option names.
const (
	// OptMaxFrameBytes caps one request or answer; codec.DefaultMaxFrame by default.
	OptMaxFrameBytes = "max_frame_bytes"
	// OptMaxMergedBytes caps the answers the proxy holds for one request it
	// sent as several (a split MGET, a FLUSHALL to every server), and so the
	// merged answer; max_frame_bytes by default, so no answer through the
	// proxy is larger than a server's may be.
	OptMaxMergedBytes = "max_merged_bytes"
	// OptPassword is the password clients must give with AUTH or HELLO;
	// none by default (no AUTH needed).
	OptPassword = "password"
	// OptUsername is the user name that goes with OptPassword ("default").
	OptUsername = "username"
	// OptUpstreamPassword and OptUpstreamUsername authenticate the proxy's
	// own connections to servers: AUTH goes out before their first command.
	OptUpstreamPassword = "upstream_password"
	OptUpstreamUsername = "upstream_username"
	// OptMode is "proxy" (default: servers are independent, routes pick them)
	// or "cluster" (every route's cluster is a Redis Cluster; slots pick the node).
	OptMode = "mode"
	// OptReadPolicy is "primary" (default) or, in cluster mode only,
	// "prefer_replica": read-only commands go to a replica of their slot's
	// shard, on connections that sent READONLY, and to the primary when the
	// shard has no replica or the replica cannot be reached.
	OptReadPolicy = "read_policy"
)

// Option values.
const (
	ModeProxy               = "proxy"
	ModeCluster             = "cluster"
	ReadPolicyPrimary       = "primary"
	ReadPolicyPreferReplica = "prefer_replica"
)

// options are a listener's settings; all codecs of the listener share them.
type options struct {
	maxFrame    int
	maxMerged   int
	password    string
	username    string
	upPassword  string
	upUsername  string
	cluster     bool
	readReplica bool
	// upHandshake is sent first on every upstream connection (AUTH,
	// READONLY); handshakeNames names its commands, in order.
	upHandshake    []byte
	handshakeNames []string
}

// redisCodec is one connection's codec. A Redis frame does not say whether
// it is a command or an answer (both may be arrays of bulk strings), so the
// codec reads its connection's direction from the peer New was given, once:
// facing a client it decodes commands and encodes answers; facing a server it
// encodes commands and decodes answers.
type redisCodec struct {
	opt *options
	// toServer: the far end is a server (codec.PeerServer).
	toServer bool
	// pending counts handshake answers still to come on a connection to a
	// server: Handshake adds, Decode swallows them.
	pending atomic.Int32
	// sess is the downstream client's state, used by Handle only.
	sess *session
}

var (
	_ codec.Codec      = (*redisCodec)(nil)
	_ codec.Handler    = (*redisCodec)(nil)
	_ codec.Handshaker = (*redisCodec)(nil)
	_ codec.Sniffer    = (*redisCodec)(nil)
)

// New makes a codec for a connection whose far end is peer; it refuses
// unknown options by name.
func New(opts codec.Options, peer codec.Peer) (codec.Codec, error) {
	o, err := parseOptions(opts)
	if err != nil {
		return nil, err
	}
	return &redisCodec{opt: o, toServer: peer == codec.PeerServer}, nil
}

func parseOptions(opts codec.Options) (*options, error) {
	o := &options{maxFrame: codec.DefaultMaxFrame, username: "default"}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := opts[k]
		switch k {
		case OptMaxFrameBytes:
			n, err := strconv.Atoi(v)
			if err != nil || n < 64 || n > 1<<30 {
				return nil, fmt.Errorf("codec/%s: option %s: %q is not a size from 64 to 1 GiB", Name, k, v)
			}
			o.maxFrame = n
		case OptMaxMergedBytes:
			n, err := strconv.Atoi(v)
			if err != nil || n < 64 || n > 1<<30 {
				return nil, fmt.Errorf("codec/%s: option %s: %q is not a size from 64 to 1 GiB", Name, k, v)
			}
			o.maxMerged = n
		case OptPassword:
			o.password = v
		case OptUsername:
			o.username = v
		case OptUpstreamPassword:
			o.upPassword = v
		case OptUpstreamUsername:
			o.upUsername = v
		case OptMode:
			switch v {
			case "", ModeProxy:
			case ModeCluster:
				o.cluster = true
			default:
				return nil, fmt.Errorf("codec/%s: option %s: %q is not proxy or cluster", Name, k, v)
			}
		case OptReadPolicy:
			switch v {
			case "", ReadPolicyPrimary:
			case ReadPolicyPreferReplica:
				o.readReplica = true
			default:
				return nil, fmt.Errorf("codec/%s: option %s: %q is not primary or prefer_replica", Name, k, v)
			}
		default:
			return nil, fmt.Errorf("codec/%s: unknown option %q", Name, k)
		}
	}
	if o.maxMerged == 0 {
		o.maxMerged = o.maxFrame
	}
	if o.upPassword != "" {
		args := [][]byte{[]byte("AUTH")}
		if o.upUsername != "" {
			args = append(args, []byte(o.upUsername))
		}
		o.upHandshake = appendCommand(nil, append(args, []byte(o.upPassword))...)
		o.handshakeNames = append(o.handshakeNames, "AUTH")
	} else if o.upUsername != "" {
		return nil, fmt.Errorf("codec/%s: option %s needs %s", Name, OptUpstreamUsername, OptUpstreamPassword)
	}
	if o.readReplica {
		if !o.cluster {
			return nil, fmt.Errorf("codec/%s: option %s prefer_replica needs %s cluster (a Redis Cluster lists its replicas)", Name, OptReadPolicy, OptMode)
		}
		// READONLY lets a replica serve reads of its primary's slots; on a
		// primary it changes nothing, so every connection sends it.
		o.upHandshake = appendCommand(o.upHandshake, []byte("READONLY"))
		o.handshakeNames = append(o.handshakeNames, "READONLY")
	}
	return o, nil
}

// Split finds the end of the first command (facing a client) or answer
// (facing a server).
func (c *redisCodec) Split(buf []byte) (codec.Split, error) {
	if len(buf) == 0 {
		return codec.Split{Need: 1}, nil
	}
	if !c.toServer && buf[0] != typeArray {
		return splitInline(buf)
	}
	s := scanner{buf: buf, maxFrame: c.opt.maxFrame}
	r, err := s.value(0, 0)
	if err != nil {
		if errors.Is(err, codec.ErrMalformed) && !c.toServer {
			// Like redis-server, answer "-ERR Protocol error" before
			// closing: the bytes so far go to Decode, which fails with a
			// partial request the proxy answers.
			return codec.Split{Len: len(buf)}, nil
		}
		return codec.Split{}, err
	}
	if r.need > 0 {
		return codec.Split{Need: growth(r.need, len(buf))}, nil
	}
	return codec.Split{Len: r.end}, nil
}

// growth is what Split asks for when a frame is incomplete: at most as many
// bytes again as have arrived (and at least minGrowth). The proxy sizes its
// read buffer by Need, and a bulk length is only what the peer claims: a
// 20-byte header saying 8 MiB must not get an 8 MiB buffer. Asking for no
// more than what arrived makes the buffer grow with the bytes received,
// doubling at most, so a frame costs at most twice its size in copies.
func growth(need, have int) int {
	return min(need, max(have, minGrowth))
}

// splitInline finds the end of an inline command: one line ended by LF.
func splitInline(buf []byte) (codec.Split, error) {
	for i, b := range buf {
		if b == '\n' {
			return codec.Split{Len: i + 1}, nil
		}
		if i >= maxLine {
			break
		}
	}
	if len(buf) > maxLine {
		return codec.Split{}, codec.Errorf(Name, codec.ErrTooLarge, "inline command longer than %d bytes", maxLine)
	}
	return codec.Split{Need: 1}, nil
}
