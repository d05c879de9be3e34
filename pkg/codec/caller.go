package codec

// Caller is an optional capability: a codec that can build a request from
// text and show an answer as text, so `rosettactl call` can send one call of
// the protocol by hand and `rosettactl serve` can answer calls with a fixed
// reply. The proxy never uses it.
//
// The command line finds it through the registry (Lookup, then New, then a
// type assertion), never by importing a codec, so a codec in its own package
// gets both commands by implementing it. rosettactl makes a codec with
// PeerServer to call and with PeerClient to serve, writes the messages it
// gets here with Encode and reads answers with Split and Decode.
type Caller interface {
	// NewRequest builds a two-way request with the given ID (a protocol
	// without IDs ignores it). attrs are the protocol's attributes (Dubbo's
	// interface and method, tRPC's callee and func); args are the call's
	// arguments as text, in a form the codec documents (JSON values for
	// Dubbo, a JSON struct for Thrift, one word each for Redis). An
	// attribute or argument the codec cannot write is an error naming it.
	NewRequest(id uint64, attrs map[string]string, args []string) (*Message, error)
	// Answer shows a decoded response as text.
	Answer(resp *Message) (Answer, error)
	// Respond builds a successful response to req whose value is reply,
	// text in the same form as NewRequest's arguments (a JSON value for
	// Dubbo and tRPC, a JSON struct for Thrift, RESP from JSON for Redis).
	// An empty reply is the protocol's empty answer.
	Respond(req *Message, reply string) (*Message, error)
	// Args shows a decoded request's arguments (its body) as text.
	Args(req *Message) (string, error)
}

// Answer is a response shown as text.
type Answer struct {
	// Value is the answer's value, as JSON where the protocol's value maps
	// to JSON, else as the protocol shows it.
	Value string
	// Status is StatusOK for a successful answer, else StatusError (or the
	// status a proxy's local reply stands for, when the codec can tell).
	Status Status
	// Code is the protocol's own status ("20", "TApplicationException 1",
	// "ret 0"); empty when the protocol has none.
	Code string
	// Error is the error message an unsuccessful answer carries.
	Error string
}
