package dubbokit

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	getty "github.com/apache/dubbo-getty"

	"dubbo.apache.org/dubbo-go/v3/common"
	"dubbo.apache.org/dubbo-go/v3/common/constant"
	"dubbo.apache.org/dubbo-go/v3/protocol"
	"dubbo.apache.org/dubbo-go/v3/protocol/invocation"
	dubbogetty "dubbo.apache.org/dubbo-go/v3/remoting/getty"

	// The dubbo protocol package registers the "dubbo" codec (hessian2) that
	// the getty server reads and writes frames with.
	_ "dubbo.apache.org/dubbo-go/v3/protocol/dubbo"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// Greeter is the interface every provider serves.
const Greeter = "org.rosetta.Greeter"

// Methods a provider answers. Every answer starts with the provider's name
// and a colon, so a test sees which provider served a call.
const (
	// MethodSayHello answers "<name>: hello <arg>".
	MethodSayHello = "sayHello"
	// MethodEcho answers "<name>: <arg>".
	MethodEcho = "echo"
	// MethodAttachment answers "<name>: <value>", the value of the request
	// attachment whose key is the argument ("" when absent).
	MethodAttachment = "attachment"
	// MethodHold blocks until the provider is released or killed, then
	// answers like echo. Tests use it to have calls in flight.
	MethodHold = "hold"
	// MethodFail answers with a service exception "<name>: failed <arg>".
	MethodFail = "fail"
)

// ProviderConfig says what a provider serves.
type ProviderConfig struct {
	// Name starts every answer ("v1" gives "v1: hello x").
	Name string
	// Interface served; Greeter when empty.
	Interface string
	// Version and Group of the service; calls for another version or group
	// get a "service not found" exception, as from a real Dubbo provider.
	Version string
	Group   string
	// Addr is the address to listen on; "127.0.0.1:0" (a free port) when
	// empty. A provider restarted in place passes its old address.
	Addr string
}

// Provider is a dubbo-go server on a loopback port, speaking the classic
// dubbo protocol with hessian2. It uses dubbo-go's own getty transport, codec
// and request handler; only the service behind the handler is the kit's.
//
// dubbo-go's exporter (DubboProtocol.Export) cannot serve two providers of
// the same service in one process (it keeps one exporter per service key for
// the whole process, whatever the port) and cannot drop live connections, so
// the kit builds the server from dubbo-go's transport parts instead.
type Provider struct {
	cfg  ProviderConfig
	addr string

	server *dubbogetty.Server
	tcp    getty.Server

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	dead  bool

	calls   atomic.Int64 // requests answered or in flight, heartbeats aside
	holding atomic.Int64 // hold calls in flight
	release chan struct{}
	relOnce sync.Once
}

// StartProvider starts a provider on a free loopback port and kills it when
// the test ends.
func StartProvider(t testing.TB, cfg ProviderConfig) *Provider {
	t.Helper()
	return OnFreshPort(t, "provider "+cfg.Name, func() (*Provider, string) {
		p, err := NewProvider(cfg)
		if err != nil {
			t.Fatalf("dubbokit: start provider %q: %v", cfg.Name, err)
		}
		t.Cleanup(p.Kill)
		return p, p.Addr()
	})
}

// NewProvider starts a provider on a free loopback port.
func NewProvider(cfg ProviderConfig) (*Provider, error) {
	Quiet()
	if cfg.Interface == "" {
		cfg.Interface = Greeter
	}
	p := &Provider{
		cfg:     cfg,
		conns:   make(map[net.Conn]struct{}),
		release: make(chan struct{}),
	}
	if cfg.Addr == "" {
		// Port 0: getty listens on it as given, and the kernel picks a
		// free port.
		cfg.Addr = "127.0.0.1:0"
	}
	url, err := common.NewURL("dubbo://" + cfg.Addr + "/" + cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("dubbokit: %w", err)
	}
	p.server = dubbogetty.NewServer(url, p.handle)
	if err := p.listen(url.Location); err != nil {
		return nil, err
	}
	return p, nil
}

// listen starts getty's TCP server with dubbo-go's session setup, keeping
// each accepted connection so Kill can drop it.
func (p *Provider) listen(addr string) (err error) {
	conf, err := serverSessionConf()
	if err != nil {
		return err
	}
	p.tcp = getty.NewTCPServer(getty.WithLocalAddress(addr), conf.taskPool())
	// RunEventLoop panics when it cannot listen.
	defer func() {
		if r := recover(); r != nil {
			p.tcp.Close()
			err = fmt.Errorf("dubbokit: listen on %s: %v", addr, r)
		}
	}()
	handler := dubbogetty.NewRpcServerHandler(conf.sessionNumber, conf.sessionTimeout, p.server)
	p.tcp.RunEventLoop(func(s getty.Session) error {
		if !p.track(s.Conn()) {
			return fmt.Errorf("dubbokit: provider %s is killed", p.cfg.Name)
		}
		return conf.setupSession(s, p.server, &trackingHandler{handler, p})
	})
	ss, ok := p.tcp.(getty.StreamServer)
	if !ok {
		return fmt.Errorf("dubbokit: getty TCP server %T has no listener", p.tcp)
	}
	p.addr = ss.Listener().Addr().String()
	return nil
}

func (p *Provider) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Provider) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// trackingHandler is dubbo-go's server event handler that also forgets a
// connection once it is closed.
type trackingHandler struct {
	*dubbogetty.RpcServerHandler
	p *Provider
}

func (h *trackingHandler) OnClose(s getty.Session) {
	h.p.untrack(s.Conn())
	h.RpcServerHandler.OnClose(s)
}

func (h *trackingHandler) OnError(s getty.Session, err error) {
	h.p.untrack(s.Conn())
	h.RpcServerHandler.OnError(s, err)
}

// Addr is the provider's "127.0.0.1:port".
func (p *Provider) Addr() string { return p.addr }

// Name is the provider's name, the prefix of its answers.
func (p *Provider) Name() string { return p.cfg.Name }

// Port is the provider's TCP port.
func (p *Provider) Port() int {
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

// Calls counts the requests this provider has received (heartbeats aside).
func (p *Provider) Calls() int64 { return p.calls.Load() }

// Conns counts the connections open to the provider.
func (p *Provider) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Holding counts hold calls now blocked in this provider.
func (p *Provider) Holding() int64 { return p.holding.Load() }

// WaitHolding polls until n hold calls are blocked in the provider.
func (p *Provider) WaitHolding(n int64, timeout time.Duration) error {
	return testutil.Poll(timeout, fmt.Sprintf("%d hold calls in provider %s", n, p.cfg.Name), func() (bool, error) {
		got := p.Holding()
		return got >= n, fmt.Errorf("provider %s holds %d calls", p.cfg.Name, got)
	})
}

// Release answers every hold call, now and later.
func (p *Provider) Release() { p.relOnce.Do(func() { close(p.release) }) }

// Kill stops the provider as a crash would: the listener closes and every
// connection is reset at once, with calls still in flight unanswered.
func (p *Provider) Kill() {
	p.mu.Lock()
	p.dead = true
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	if p.tcp != nil {
		p.tcp.Close()
	}
	for c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset, not a graceful close
		}
		_ = c.Close()
	}
	// Unblock hold calls; their answers go nowhere.
	p.Release()
}

// handle serves one decoded request. dubbo-go's server handler has already
// put the request's attachments (interface, version, group, and the user's)
// on the invocation.
func (p *Provider) handle(inv *invocation.RPCInvocation) protocol.RPCResult {
	p.calls.Add(1)
	if err := p.checkService(inv); err != nil {
		return protocol.RPCResult{Err: err}
	}
	arg, err := stringArg(inv)
	if err != nil {
		return protocol.RPCResult{Err: fmt.Errorf("%s: %w", p.cfg.Name, err)}
	}
	answer := func(s string) protocol.RPCResult {
		return protocol.RPCResult{
			Rest:  p.cfg.Name + ": " + s,
			Attrs: map[string]any{"provider": p.cfg.Name},
		}
	}
	switch inv.MethodName() {
	case MethodSayHello:
		return answer("hello " + arg)
	case MethodEcho:
		return answer(arg)
	case MethodAttachment:
		v, _ := inv.GetAttachment(arg)
		return answer(v)
	case MethodHold:
		p.holding.Add(1)
		<-p.release
		p.holding.Add(-1)
		return answer(arg)
	case MethodFail:
		return protocol.RPCResult{Err: fmt.Errorf("%s: failed %s", p.cfg.Name, arg)}
	default:
		return protocol.RPCResult{Err: fmt.Errorf("%s: no method %q in %s", p.cfg.Name, inv.MethodName(), p.cfg.Interface)}
	}
}

// checkService refuses a call for another interface, version or group, as
// dubbo-go's own provider does when it has no exporter for the service key.
func (p *Provider) checkService(inv *invocation.RPCInvocation) error {
	iface := inv.GetAttachmentWithDefaultValue(constant.InterfaceKey, "")
	if iface == "" {
		iface = strings.TrimPrefix(inv.GetAttachmentWithDefaultValue(constant.PathKey, ""), "/")
	}
	version := inv.GetAttachmentWithDefaultValue(constant.VersionKey, "")
	group := inv.GetAttachmentWithDefaultValue(constant.GroupKey, "")
	if iface != p.cfg.Interface || version != p.cfg.Version || group != p.cfg.Group {
		return fmt.Errorf("%s: service not found: %s (serving %s)", p.cfg.Name,
			common.ServiceKey(iface, group, version),
			common.ServiceKey(p.cfg.Interface, p.cfg.Group, p.cfg.Version))
	}
	return nil
}

func stringArg(inv *invocation.RPCInvocation) (string, error) {
	args := inv.Arguments()
	if len(args) != 1 {
		return "", fmt.Errorf("%s takes one argument, got %d", inv.MethodName(), len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return "", fmt.Errorf("%s takes a string, got %T", inv.MethodName(), args[0])
	}
	return s, nil
}
