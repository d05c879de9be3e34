package thrift

import (
	"encoding/binary"
	"math"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Encode implements codec.Codec. An unchanged message is its Raw bytes. A new
// ID is written over the seqid (four bytes in place for binary; a compact
// seqid is a varint, so the message is rebuilt around it and the frame length
// corrected); a THeader frame's own sequence number follows it. Mutations are
// written as THeader key/value info headers; other transports have nowhere to
// carry them and Encode refuses them with codec.ErrUnsupported.
func (c *Codec) Encode(dst []byte, m *codec.Message) ([]byte, error) {
	fi, ok := m.Private.(*frameInfo)
	if !ok {
		return dst, codec.Errorf(Name, codec.ErrUnsupported, "the message was not decoded or built by the thrift codec")
	}
	if len(m.Mutations) == 0 && m.ID == uint64(fi.seqID) {
		return append(dst, m.Raw...), nil
	}
	if m.ID > math.MaxUint32 {
		return dst, codec.Errorf(Name, codec.ErrUnsupported, "id %d does not fit a 32-bit seqid", m.ID)
	}
	if len(m.Mutations) > 0 {
		if fi.transport != transportHeader {
			return dst, codec.Errorf(Name, codec.ErrUnsupported,
				"cannot write attribute %q: only the THeader transport carries headers, this message is %s over a %s transport",
				m.Mutations[0].Key, encodingNames[fi.enc], fi.transport)
		}
		for _, mu := range m.Mutations {
			if mu.Key == keyMethod || mu.Key == keyService {
				return dst, codec.Errorf(Name, codec.ErrUnsupported, "cannot write attribute %q: it is part of the message name, not a header", mu.Key)
			}
		}
	}
	seq := uint32(m.ID)
	switch fi.transport {
	case transportUnframed:
		return appendMessage(dst, m.Raw, fi, seq), nil
	case transportFramed:
		start := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		dst = appendMessage(dst, m.Raw, fi, seq)
		binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
		return dst, nil
	}
	return appendHeader(dst, m, fi, seq)
}

// appendMessage appends the protocol message of raw with seqid seq.
func appendMessage(dst, raw []byte, fi *frameInfo, seq uint32) []byte {
	if fi.enc == encCompact {
		dst = append(dst, raw[fi.msgOff:fi.seqOff]...)
		dst = binary.AppendUvarint(dst, uint64(seq))
		return append(dst, raw[fi.seqOff+fi.seqLen:]...)
	}
	at := len(dst) + fi.seqOff - fi.msgOff
	dst = append(dst, raw[fi.msgOff:]...)
	binary.BigEndian.PutUint32(dst[at:], seq)
	return dst
}

// appendHeader appends a THeader frame: the fixed part with the new sequence
// number, the header block (rebuilt when there are mutations), the payload.
func appendHeader(dst []byte, m *codec.Message, fi *frameInfo, seq uint32) ([]byte, error) {
	raw := m.Raw
	start := len(dst)
	dst = append(dst, raw[:headerStart]...)
	binary.BigEndian.PutUint32(dst[start+8:], seq)
	if len(m.Mutations) == 0 {
		dst = append(dst, raw[headerStart:fi.hdrEnd]...)
	} else {
		hs := len(dst)
		dst = appendHeaderBlock(dst, fi, mergeHeaders(fi.headers, m.Mutations))
		if n := len(dst) - hs; n > maxHeaderBytes {
			return dst[:start], codec.Errorf(Name, codec.ErrTooLarge, "THeader header of %d bytes is over the format's limit of %d", n, maxHeaderBytes)
		}
		binary.BigEndian.PutUint16(dst[start+12:], uint16((len(dst)-hs)/4))
	}
	dst = appendMessage(dst, raw, fi, seq)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst, nil
}

// appendHeaderBlock writes the protocol id, no transforms, one key/value info
// section, the info sections Rosetta does not read, and zero padding.
func appendHeaderBlock(dst []byte, fi *frameInfo, headers []codec.Attr) []byte {
	hs := len(dst)
	dst = binary.AppendUvarint(dst, uint64(fi.protoID))
	dst = append(dst, 0) // transform count
	if len(headers) > 0 {
		dst = binary.AppendUvarint(dst, infoKeyValue)
		dst = binary.AppendUvarint(dst, uint64(len(headers)))
		for _, h := range headers {
			dst = appendVarString(dst, h.Key)
			dst = appendVarString(dst, h.Value)
		}
	}
	dst = append(dst, fi.infoRest...)
	for (len(dst)-hs)%4 != 0 {
		dst = append(dst, 0)
	}
	return dst
}

func appendVarString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// mergeHeaders applies mutations in order: a key already present takes the
// new value in place, a new key goes at the end.
func mergeHeaders(headers, mutations []codec.Attr) []codec.Attr {
	out := make([]codec.Attr, len(headers), len(headers)+len(mutations))
	copy(out, headers)
	for _, mu := range mutations {
		found := false
		for i := range out {
			if out[i].Key == mu.Key { // every copy: readers keep the last
				out[i].Value, found = mu.Value, true
			}
		}
		if !found {
			out = append(out, mu)
		}
	}
	return out
}
