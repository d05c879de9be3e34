// Package dubbokit runs real dubbo-go v3.3.0 providers and consumers in a
// test process, with no registry: providers listen on free loopback ports,
// consumers dial a direct URL (a provider or a proxy in front of it). The
// wire is dubbo-go's own: the classic dubbo protocol with hessian2.
//
// Every provider serves Greeter; its answers start with its name ("v1: hello
// x"), so a test sees which provider served a call. RawConn speaks the same
// protocol frame by frame, for what a real client cannot be made to do
// (garbage bytes, chosen request ids).
package dubbokit

import (
	"os"
	"sync"

	getty "github.com/apache/dubbo-getty"
	"github.com/dubbogo/gost/log/logger"
)

// LogEnv, when set to 1, keeps dubbo-go's and getty's logs.
const LogEnv = "DUBBOKIT_LOG"

var quietOnce sync.Once

// Quiet silences dubbo-go's and getty's logs (they log every connection and
// call at info level) unless DUBBOKIT_LOG=1.
func Quiet() {
	quietOnce.Do(func() {
		if os.Getenv(LogEnv) == "1" {
			return
		}
		logger.SetLogger(silent{})
		getty.SetLoggerLevel(getty.LoggerLevelFatal)
	})
}

// silent drops every log line; Fatal still stops the process, as dubbo-go
// expects.
type silent struct{}

func (silent) Info(...any)               {}
func (silent) Warn(...any)               {}
func (silent) Error(...any)              {}
func (silent) Debug(...any)              {}
func (silent) Infof(string, ...any)      {}
func (silent) Warnf(string, ...any)      {}
func (silent) Errorf(string, ...any)     {}
func (silent) Debugf(string, ...any)     {}
func (silent) Fatal(a ...any)            { panic(a) }
func (silent) Fatalf(f string, a ...any) { panic(f) }
