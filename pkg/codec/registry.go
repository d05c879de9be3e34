package codec

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
)

// Options are a codec's settings from config (an ApplicationProtocol's codec
// options, or a listener's). Keys and values are codec-specific. An option
// that holds a credential is named password, token, or ends in _password or
// _token: dumps redact it, and a config may give it as "<name>_secret:
// SECRET", which the proxy resolves before the codec sees the options
// (config.IsCredentialOption, config.SecretRefSuffix).
type Options map[string]string

// Protocol is what a protocol package registers.
type Protocol struct {
	// Name is the protocol's registered name, as config names it ("dubbo").
	Name string
	// Ordering says how responses pair with requests.
	Ordering Ordering
	// MetricAttribute, when set, names the attribute whose value labels the
	// proxy's per-operation metrics (Dubbo and Thrift: method; tRPC: func;
	// Redis: command).
	MetricAttribute string
	// New makes a Codec for one connection, whose far end is peer. It must
	// have no side effects; it returns an error naming the option when opts
	// are invalid, and the proxy calls it once when config arrives so bad
	// options are refused early.
	New func(opts Options, peer Peer) (Codec, error)
}

// Peer says what is at the far end of a codec's connection, which protocols
// whose frames do not say whether they are requests or answers (Redis) need
// to know.
type Peer uint8

const (
	// PeerClient: a caller's connection (downstream). The codec decodes
	// requests and encodes their answers.
	PeerClient Peer = iota
	// PeerServer: a connection to a server (upstream). The codec encodes
	// requests and decodes answers.
	PeerServer
)

func (p Peer) String() string {
	if p == PeerServer {
		return "server"
	}
	return "client"
}

var (
	mu        sync.RWMutex
	protocols = map[string]Protocol{}
)

// Auto is the codec name a listener gives to have each connection's protocol
// told from its first bytes (Sniffer) rather than named. No protocol may
// register under it.
const Auto = "auto"

// Register adds a protocol. It panics on an empty name, Auto, a nil New or a
// name registered twice: those are programming errors found at process
// start.
func Register(p Protocol) {
	if p.Name == "" {
		panic("codec: Register with an empty name")
	}
	if p.Name == Auto {
		panic(fmt.Sprintf("codec: Register %q: the name is reserved for sniffing listeners", Auto))
	}
	if p.New == nil {
		panic(fmt.Sprintf("codec: Register %q with a nil New", p.Name))
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := protocols[p.Name]; dup {
		panic(fmt.Sprintf("codec: protocol %q registered twice", p.Name))
	}
	protocols[p.Name] = p
}

// Lookup returns the protocol registered under name.
func Lookup(name string) (Protocol, bool) {
	mu.RLock()
	defer mu.RUnlock()
	p, ok := protocols[name]
	return p, ok
}

// Names lists the registered protocols, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(protocols))
	for n := range protocols {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// MaxFrame is the frame limit o sets with the max_frame_bytes option every
// codec of this module takes, 0 when o sets none; the proxy holds a
// connection's buffer to at least that.
func (o Options) MaxFrame() int {
	n, err := strconv.Atoi(o["max_frame_bytes"])
	if err != nil || n < 0 {
		return 0
	}
	return n
}
