package trpc

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Encode appends msg's wire form to dst. An unchanged message is its Raw
// bytes. A new ID goes into the head's stream id and, on unary frames, into
// the header's request_id; mutations become trans_info entries. Either
// re-marshals the protobuf header (field by field, keeping every other field
// as received) and fixes the header and total lengths.
func (c *trpcCodec) Encode(dst []byte, msg *codec.Message) ([]byte, error) {
	f, ok := msg.Private.(*frame)
	if !ok {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "message was not decoded by this codec")
	}
	unchangedID := msg.ID == f.idOnWire()
	if unchangedID && len(msg.Mutations) == 0 {
		return append(dst, msg.Raw...), nil
	}
	if msg.ID > math.MaxUint32 {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "id %d does not fit tRPC's 32-bit request and stream ids", msg.ID)
	}
	muts, err := transMutations(msg.Mutations)
	if err != nil {
		return nil, err
	}
	var pb []byte
	switch {
	case f.dataType == unaryFrame:
		pb, err = f.rewriteUnary(uint32(msg.ID), !unchangedID, muts)
	case len(muts) == 0:
		pb = f.pb // only the head's stream id changes
	case f.streamType == streamInit && f.request:
		pb = rewriteInit(f.pb, muts)
	case f.streamType == streamClose:
		pb = spliceTrans(nil, f.pb, fCloseTransInfo, muts)
	default:
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "attribute mutations on a stream frame of type %d", f.streamType)
	}
	if err != nil {
		return nil, err
	}
	return c.appendFrame(dst, f, uint32(msg.ID), pb)
}

// idOnWire is the ID Decode reported for the frame.
func (f *frame) idOnWire() uint64 {
	if f.dataType == unaryFrame {
		return uint64(f.requestID)
	}
	return uint64(f.streamID)
}

// appendFrame writes a head with fresh lengths and the given id, the protobuf
// pb, and for unary frames the original body and attachment.
func (c *trpcCodec) appendFrame(dst []byte, f *frame, id uint32, pb []byte) ([]byte, error) {
	hlen, rest := 0, f.rest
	if f.dataType == unaryFrame {
		hlen = len(pb)
		if hlen > math.MaxUint16 {
			return nil, codec.Errorf(Name, codec.ErrTooLarge, "header of %d bytes overflows the 16-bit header length", hlen)
		}
	}
	total := headLen + len(pb) + len(rest)
	if total > c.maxFrame {
		return nil, codec.Errorf(Name, codec.ErrTooLarge, "frame of %d bytes exceeds %s %d", total, OptMaxFrameBytes, c.maxFrame)
	}
	var head [headLen]byte
	binary.BigEndian.PutUint16(head[:], magic)
	head[offDataType], head[offStreamType] = f.dataType, f.streamType
	binary.BigEndian.PutUint32(head[offTotalLen:], uint32(total))
	binary.BigEndian.PutUint16(head[offHeaderLen:], uint16(hlen))
	binary.BigEndian.PutUint32(head[offStreamID:], id)
	head[offVersion] = f.version
	dst = append(dst, head[:]...)
	dst = append(dst, pb...)
	return append(dst, rest...), nil
}

// transMutations checks mutation keys and keeps the last value of each key,
// in first-seen order so the output is deterministic.
func transMutations(ms []codec.Attr) ([]codec.Attr, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	out := make([]codec.Attr, 0, len(ms))
	for _, m := range ms {
		if isCore(m.Key) {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "mutation of %q: caller, callee and func are not rewritten; mutations write trans_info", m.Key)
		}
		replaced := false
		for i := range out {
			if out[i].Key == m.Key {
				out[i].Value, replaced = m.Value, true
			}
		}
		if !replaced {
			out = append(out, m)
		}
	}
	return out, nil
}

// rewriteUnary re-marshals a unary header with a new request_id and the
// mutated trans_info entries.
func (f *frame) rewriteUnary(id uint32, newID bool, muts []codec.Attr) ([]byte, error) {
	transField := protowire.Number(fReqTransInfo)
	if !f.request {
		transField = fRspTransInfo
	}
	pb := make([]byte, 0, len(f.pb)+protowire.SizeTag(fRequestID)+protowire.SizeVarint(uint64(id))+transSize(muts))
	drop := protowire.Number(0) // no field has number 0
	if newID {
		// Drop the old request_id (every copy: protobuf lets the last one
		// win), then write the new one.
		drop = fRequestID
	}
	pb = splice(pb, f.pb, drop, transField, muts)
	if newID {
		pb = protowire.AppendTag(pb, fRequestID, protowire.VarintType)
		pb = protowire.AppendVarint(pb, uint64(id))
	}
	return pb, nil
}

// spliceTrans appends msg to dst without the trans_info entries (field
// transField) whose keys muts set, then appends muts as new entries.
func spliceTrans(dst, msg []byte, transField protowire.Number, muts []codec.Attr) []byte {
	return splice(dst, msg, 0, transField, muts)
}

// splice appends msg to dst without field drop and without the trans_info
// entries whose keys muts set, then appends muts as new entries.
func splice(dst, msg []byte, drop, transField protowire.Number, muts []codec.Attr) []byte {
	if drop == 0 && len(muts) == 0 {
		return append(dst, msg...)
	}
	_ = walk(msg, func(fl field) error { // msg was validated by Decode
		switch {
		case fl.num == drop:
		case len(muts) > 0 && fl.num == transField && fl.typ == protowire.BytesType && mutated(entryKey(fl.b), muts):
		default:
			dst = append(dst, fl.wire...)
		}
		return nil
	})
	for _, m := range muts {
		dst = protowire.AppendTag(dst, transField, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(entrySize(m)))
		dst = protowire.AppendTag(dst, fMapKey, protowire.BytesType)
		dst = protowire.AppendString(dst, m.Key)
		dst = protowire.AppendTag(dst, fMapValue, protowire.BytesType)
		dst = protowire.AppendString(dst, m.Value)
	}
	return dst
}

// rewriteInit writes mutations into an INIT frame's request meta, adding one
// when the frame has none.
func rewriteInit(meta []byte, muts []codec.Attr) []byte {
	out := make([]byte, 0, len(meta)+8+transSize(muts))
	found := false
	_ = walk(meta, func(fl field) error { // meta was validated by Decode
		if fl.num != fInitRequestMeta || fl.typ != protowire.BytesType {
			out = append(out, fl.wire...)
			return nil
		}
		found = true
		inner := spliceTrans(nil, fl.b, fInitReqTransInfo, muts)
		out = protowire.AppendTag(out, fInitRequestMeta, protowire.BytesType)
		out = protowire.AppendBytes(out, inner)
		return nil
	})
	if !found {
		out = protowire.AppendTag(out, fInitRequestMeta, protowire.BytesType)
		out = protowire.AppendBytes(out, spliceTrans(nil, nil, fInitReqTransInfo, muts))
	}
	return out
}

func mutated(key []byte, muts []codec.Attr) bool {
	for _, m := range muts {
		if m.Key == string(key) {
			return true
		}
	}
	return false
}

// entryKey reads a map entry's key.
func entryKey(entry []byte) []byte {
	var key []byte
	_ = walk(entry, func(fl field) error {
		if fl.num == fMapKey {
			key = fl.b
		}
		return nil
	})
	return key
}

func entrySize(m codec.Attr) int {
	return protowire.SizeTag(fMapKey) + protowire.SizeBytes(len(m.Key)) +
		protowire.SizeTag(fMapValue) + protowire.SizeBytes(len(m.Value))
}

func transSize(muts []codec.Attr) int {
	n := 0
	for _, m := range muts {
		n += protowire.SizeTag(fReqTransInfo) + protowire.SizeBytes(entrySize(m))
	}
	return n
}
