package proxy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

// A listener whose codec is "auto" (codec.Auto) serves several protocols on
// one port, as Istio's protocol sniffing serves HTTP and TCP on one: each
// connection's protocol is told from the first bytes its caller sends,
// among the registered protocols whose codecs are Sniffers.
//
// Until it decides, the sniffing is the connection's codec (autoCodec): its
// Split asks every candidate about the bytes read so far, and for one more
// byte while none is sure; once one is, the chosen codec's Split reads the
// very same buffer. So the connection is read as any other (on an event
// loop, fed by an HBONE connection's reader, after TLS), no byte is lost
// or read twice, and no goroutine waits on a connection that has not
// spoken. At its first frame (or the error that ends reading first) the
// connection adopts the chosen protocol's listener config (adopt): its
// codec, options, ordering and upstream pools.
//
// The wait for the first byte has no bound of its own: the listener's
// idle_timeout closes a caller that says nothing, as on any listener.
// Istio learned that a short detection timeout breaks callers that open a
// connection before they need it (connection pools); its
// protocolDetectionTimeout is off by default. Bytes that have begun but
// not yet told the protocol are bounded by codec.MaxSniff and the
// listener's frame_timeout.

// Why a connection's protocol could not be told, as
// rosetta_downstream_sniff_failures_total counts it.
const (
	// sniffNoMatch: every candidate was sure the bytes are not its.
	sniffNoMatch = "no_match"
	// sniffUndecided: none was sure within codec.MaxSniff bytes, or
	// before the caller stopped sending (frame_timeout).
	sniffUndecided = "undecided"
	// sniffSilent: the caller sent nothing within the idle_timeout.
	sniffSilent = "silent"
)

// candidate is one protocol an auto listener may pick.
type candidate struct {
	// sniffer is made once per listener and shared by its connections
	// (codec.Sniffer allows it).
	sniffer codec.Sniffer
	// lc is a connection's listener config once its bytes pick this
	// protocol: the auto listener's, with this protocol and its options.
	lc *listenerConfig
}

// autoCandidates are the protocols an auto listener with options opts may
// pick, in the registry's (sorted) order, each with its options: those
// named "<protocol>.<option>" for it alone, and every other option for all
// of them. Each candidate must accept its options; a protocol-scoped
// option must name a candidate. The candidates' lc is filled in by
// finishAuto.
func autoCandidates(opts codec.Options) ([]candidate, error) {
	shared, scoped := codec.Options{}, map[string]codec.Options{}
	for k, v := range opts {
		name, opt, ok := strings.Cut(k, ".")
		if !ok {
			shared[k] = v
			continue
		}
		if scoped[name] == nil {
			scoped[name] = codec.Options{}
		}
		scoped[name][opt] = v
	}
	var out []candidate
	var names []string
	for _, name := range codec.Names() {
		p, _ := codec.Lookup(name)
		o := maps.Clone(shared)
		maps.Copy(o, scoped[name])
		c, err := p.New(o, codec.PeerClient)
		if err != nil {
			// A protocol that cannot sniff is no candidate, whatever it
			// thinks of the options; one that can must take them.
			if bare, berr := p.New(nil, codec.PeerClient); berr == nil && !isSniffer(bare) {
				continue
			}
			return nil, fmt.Errorf("codec_options: for %s: %w (give an option of one protocol as %s.<option>)", name, err, name)
		}
		s, ok := c.(codec.Sniffer)
		if !ok {
			continue
		}
		out = append(out, candidate{sniffer: s, lc: &listenerConfig{protocol: p, options: o}})
		names = append(names, name)
		delete(scoped, name)
	}
	if len(scoped) > 0 {
		name := slices.Sorted(maps.Keys(scoped))[0]
		return nil, fmt.Errorf("codec_options: %s.*: %q is not a protocol this proxy can sniff (it sniffs %v)", name, name, names)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("codec: %q: no codec this proxy was built with can sniff (it has %v)", codec.Auto, codec.Names())
	}
	return out, nil
}

func isSniffer(c codec.Codec) bool {
	_, ok := c.(codec.Sniffer)
	return ok
}

// autoFrameOptions are options whose max_frame_bytes is the largest frame
// any candidate takes, which sizes the listener's buffer limit.
func autoFrameOptions(cands []candidate) codec.Options {
	n := 0
	for _, c := range cands {
		m := c.lc.options.MaxFrame()
		if m == 0 {
			return nil // a codec's default: the proxy's buffer limit holds it
		}
		n = max(n, m)
	}
	return codec.Options{"max_frame_bytes": strconv.Itoa(n)}
}

// finishAuto makes lc, compiled, an auto listener: each candidate's config
// is lc with the candidate's protocol and options, and lc's protocol makes
// a connection's sniffing codec.
func finishAuto(lc *listenerConfig, cands []candidate) {
	for i := range cands {
		v := *lc
		v.protocol, v.options = cands[i].lc.protocol, cands[i].lc.options
		v.poolKey = poolKey(v.protocol.Name, v.options)
		cands[i].lc = &v
	}
	lc.protocol = codec.Protocol{
		Name:     codec.Auto,
		Ordering: codec.ByID,
		New: func(codec.Options, codec.Peer) (codec.Codec, error) {
			return &autoCodec{cands: cands}, nil
		},
	}
	lc.poolKey = ""
}

// autoCodec is a connection's codec while its protocol is not yet known,
// and the codec its reader keeps splitting frames with after: Split hands
// the chosen codec's answer on.
type autoCodec struct {
	cands []candidate
	// pick is set once, on the reading goroutine, by the Split that
	// decides; atomic so that a late Encode or Reply may look.
	pick atomic.Pointer[picked]
}

// picked is the protocol a connection's first bytes chose.
type picked struct {
	codec codec.Codec
	lc    *listenerConfig
}

// sniffError ends reading: the first bytes tell no protocol.
type sniffError struct {
	reason string
	prefix []byte
}

func (e *sniffError) Error() string {
	if e.reason == sniffNoMatch {
		return fmt.Sprintf("proxy: no protocol the listener sniffs matches the first bytes (% x)", e.prefix)
	}
	return fmt.Sprintf("proxy: no protocol the listener sniffs is sure of the first %d bytes (% x)", len(e.prefix), e.prefix)
}

// Split implements codec.Codec: the chosen codec's Split, once the bytes
// chose one.
func (a *autoCodec) Split(buf []byte) (codec.Split, error) {
	if p := a.pick.Load(); p != nil {
		return p.codec.Split(buf)
	}
	lc, err := a.sniff(buf)
	if lc == nil {
		return codec.Split{Need: 1}, err
	}
	cd, err := lc.protocol.New(lc.options, codec.PeerClient)
	if err != nil { // the options were checked when the config was applied
		return codec.Split{}, err
	}
	a.pick.Store(&picked{codec: cd, lc: lc})
	return cd.Split(buf)
}

// sniff is the config of the first candidate sure that buf (up to
// codec.MaxSniff bytes of it) is its protocol; nil while none is, with an
// error when none can be.
func (a *autoCodec) sniff(buf []byte) (*listenerConfig, error) {
	prefix := buf[:min(len(buf), codec.MaxSniff)]
	refused := 0
	for _, c := range a.cands {
		match, sure := c.sniffer.Sniff(prefix)
		if sure && match {
			return c.lc, nil
		}
		if sure {
			refused++
		}
	}
	switch {
	case refused == len(a.cands):
		return nil, &sniffError{reason: sniffNoMatch, prefix: append([]byte(nil), prefix...)}
	case len(prefix) == codec.MaxSniff:
		return nil, &sniffError{reason: sniffUndecided, prefix: append([]byte(nil), prefix...)}
	}
	return nil, nil
}

var errNotSniffed = codec.Errorf(codec.Auto, codec.ErrUnsupported, "the connection's protocol is not known yet")

// Decode implements codec.Codec (the connection adopts the chosen codec
// at its first frame, so the proxy does not call it).
func (a *autoCodec) Decode(frame []byte) (*codec.Message, error) {
	if p := a.pick.Load(); p != nil {
		return p.codec.Decode(frame)
	}
	return nil, errNotSniffed
}

// Encode implements codec.Codec, as Decode.
func (a *autoCodec) Encode(dst []byte, m *codec.Message) ([]byte, error) {
	if p := a.pick.Load(); p != nil {
		return p.codec.Encode(dst, m)
	}
	return nil, errNotSniffed
}

// Reply implements codec.Codec, as Decode.
func (a *autoCodec) Reply(req *codec.Message, st codec.Status, detail string) (*codec.Message, error) {
	if p := a.pick.Load(); p != nil {
		return p.codec.Reply(req, st, detail)
	}
	return nil, errNotSniffed
}

// adopt runs at the first frame of a connection of an auto listener, or
// at the error that ended its reading first: a connection whose bytes
// picked a protocol takes that protocol's codec and listener config. One
// that picked none is counted with the reason; a sniffError closes it
// here (false: Frame stops), other errors (the idle or frame timeout, the
// caller's close) go on to readFailed as on any listener.
func (dc *downConn) adopt(a *autoCodec, err error) bool {
	if p := a.pick.Load(); p != nil {
		dc.w.Lock() // startDrain reads dc.codec under it
		dc.codec, dc.lc = p.codec, p.lc
		dc.w.Unlock()
		dc.l.p.metrics.Sniffed(p.lc.statPrefix, p.lc.protocol.Name)
		return true
	}
	var se *sniffError
	switch {
	case errors.As(err, &se):
		dc.sniffFailed(se.reason, err)
		dc.close()
		return false
	case netloop.LimitReason(err) == netloop.ReasonIdle:
		dc.sniffFailed(sniffSilent, err)
	case netloop.LimitReason(err) == netloop.ReasonFrame:
		dc.sniffFailed(sniffUndecided, err)
	}
	return true
}

// sniffFailed counts and logs a connection whose protocol could not be
// told. Logged at debug, as limits are: a hostile caller can make many.
func (dc *downConn) sniffFailed(reason string, err error) {
	dc.l.p.metrics.SniffFailed(dc.lc.statPrefix, reason)
	dc.l.p.log.Debug("closing a connection whose protocol its first bytes do not tell", "listener", dc.lc.name, "remote", dc.nc.RemoteAddr().String(), "reason", reason, "err", err)
}

// Interface guards.
var _ codec.Codec = (*autoCodec)(nil)
