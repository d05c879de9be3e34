package codec

// Attr is one routable attribute: a name and its string value.
type Attr struct {
	Key   string
	Value string
}

// Attributes are a message's routable metadata. A codec may decode them lazily:
// Get of a cheap key (Dubbo's method) must not pay for an expensive one (Dubbo's
// attachments).
type Attributes interface {
	// Get returns the value of key and whether the message has it.
	Get(key string) (string, bool)
	// Range calls fn for every attribute until fn returns false.
	Range(fn func(key, value string) bool)
}

// Message is one decoded frame.
type Message struct {
	// Kind is what the message is.
	Kind Kind
	// ID is the request id as on the wire (or the stream id). The proxy
	// rewrites it to multiplex; Encode writes the current value.
	ID uint64
	// Status classifies a response; StatusOK for anything else.
	Status Status
	// Raw is the whole frame as received. Encode may copy it when nothing
	// changed.
	Raw []byte
	// Attrs are the routable attributes; never nil after Decode.
	Attrs Attributes
	// Mutations are attribute writes that Encode must apply (set or replace).
	Mutations []Attr
	// OpensStream marks a request that opens a stream: once its response
	// is OK, frames of KindStream with the same ID flow both ways between the
	// client and the upstream connection the request went to, until the
	// upstream's frame with EndStream.
	OpensStream bool
	// EndStream marks the last frame of a stream.
	EndStream bool
	// Private is the codec's own state for this message (a parsed header, the
	// offset of a field to rewrite); the proxy never looks at it.
	Private any
	// Written, when set on an answer or a push to a caller, is called once
	// the proxy has queued the message on the caller's connection, in the
	// order answers go out; never when the connection closed first. It runs
	// under the connection's write lock and must not block: it is for a
	// Handler that must know what its client has been sent (Redis starts a
	// subscription's stream once the subscribing answer is out).
	Written func()
}

// Get returns an attribute, with the message's pending mutations taking
// precedence, so routing after a mutation sees the new value.
func (m *Message) Get(key string) (string, bool) {
	for i := len(m.Mutations) - 1; i >= 0; i-- {
		if m.Mutations[i].Key == key {
			return m.Mutations[i].Value, true
		}
	}
	if m.Attrs == nil {
		return "", false
	}
	return m.Attrs.Get(key)
}

// Set records a mutation that Encode will write.
func (m *Message) Set(key, value string) {
	m.Mutations = append(m.Mutations, Attr{Key: key, Value: value})
}

// Map is Attributes backed by a map, for codecs whose attributes are cheap.
type Map map[string]string

// Get implements Attributes.
func (m Map) Get(key string) (string, bool) {
	v, ok := m[key]
	return v, ok
}

// Range implements Attributes.
func (m Map) Range(fn func(key, value string) bool) {
	for k, v := range m {
		if !fn(k, v) {
			return
		}
	}
}

// None is empty Attributes.
var None Attributes = Map(nil)
