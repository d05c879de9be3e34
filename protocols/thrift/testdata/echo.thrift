// The test service whose generated Go code (internal/echo) writes the
// captures in testdata/. Regenerate with:
//   thrift --gen go:package_prefix=github.com/rosetta-mesh/rosetta/protocols/thrift/internal/,skip_remote \
//     -out internal testdata/echo.thrift
namespace go echo

struct Inner {
  1: i16 a
  2: i8 b
  3: set<i32> s
  4: bool on
}

struct Payload {
  1: string text
  2: i32 n
  3: list<string> tags
  4: map<string, i64> counts
  5: optional Inner inner
  6: double ratio
  7: bool flag
  8: binary blob
  9: list<Inner> inners
  10: map<i32, list<bool>> nested
}

exception Oops {
  1: string why
}

service Echo {
  string ping(1: string msg)
  oneway void fire(1: string x)
  Payload echo(1: Payload payload) throws (1: Oops oops)
}
