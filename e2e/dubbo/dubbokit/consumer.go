package dubbokit

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"dubbo.apache.org/dubbo-go/v3/client"
	"dubbo.apache.org/dubbo-go/v3/common/constant"
	"dubbo.apache.org/dubbo-go/v3/common/extension"
	"dubbo.apache.org/dubbo-go/v3/filter"
	"dubbo.apache.org/dubbo-go/v3/protocol"

	// Extensions a direct-URL dubbo reference looks up by name: the failfast
	// cluster over a static directory, its load balancer, and the graceful
	// shutdown filter every reference carries by default.
	_ "dubbo.apache.org/dubbo-go/v3/cluster/cluster/failfast"
	_ "dubbo.apache.org/dubbo-go/v3/cluster/cluster/failover"
	_ "dubbo.apache.org/dubbo-go/v3/cluster/loadbalance/random"
	_ "dubbo.apache.org/dubbo-go/v3/filter/graceful_shutdown"
	_ "dubbo.apache.org/dubbo-go/v3/protocol/dubbo"
)

// ctxAttachmentsFilter is the name of the kit's consumer filter.
const ctxAttachmentsFilter = "rosetta-ctx-attachments"

func init() {
	extension.SetFilter(ctxAttachmentsFilter, func() filter.Filter { return ctxAttachments{} })
}

// ctxAttachments copies the attachments a caller put on the context (under
// dubbo-go's constant.AttachmentKey) onto the invocation. dubbo-go v3.3.0's
// new client API (Connection.CallUnary) ignores them on the dubbo protocol;
// only the old proxy-based references and the triple invoker read them.
type ctxAttachments struct{}

func (ctxAttachments) Invoke(ctx context.Context, inv protocol.Invoker, ivc protocol.Invocation) protocol.Result {
	switch m := ctx.Value(constant.AttachmentKey).(type) {
	case map[string]string:
		for k, v := range m {
			ivc.SetAttachment(k, v)
		}
	case map[string]any:
		for k, v := range m {
			ivc.SetAttachment(k, v)
		}
	}
	return inv.Invoke(ctx, ivc)
}

func (ctxAttachments) OnResponse(_ context.Context, r protocol.Result, _ protocol.Invoker, _ protocol.Invocation) protocol.Result {
	return r
}

// WithAttachments returns a context whose calls carry the given attachments,
// the way dubbo-go applications set them.
func WithAttachments(ctx context.Context, kv map[string]string) context.Context {
	m := make(map[string]any, len(kv))
	for k, v := range kv {
		m[k] = v
	}
	return context.WithValue(ctx, constant.AttachmentKey, m)
}

// ConsumerConfig says what a consumer calls.
type ConsumerConfig struct {
	// Interface called; Greeter when empty.
	Interface string
	Version   string
	Group     string
	// Timeout of each call; 3s when 0.
	Timeout time.Duration
	// Retries, when positive, makes the consumer dubbo-go's default
	// failover cluster with that many retries on another address: what a
	// user's consumer does when one of several proxies goes away.
	Retries int
}

// Consumer is a dubbo-go reference (new client API) to one direct address,
// on the dubbo protocol with hessian2, without a registry. It fails fast
// unless ConsumerConfig.Retries: no retries, so a test sees every error the
// server side gives.
//
// dubbo-go shares one set of connections per address among all references
// in a process (up to 16 connections), so two Consumers of the same address
// share connections.
type Consumer struct {
	addr    string
	conn    *client.Connection
	timeout time.Duration
}

// NewConsumer makes a consumer of the provider or proxy at addr
// ("127.0.0.1:port"). dubbo-go connects at once; it fails when nothing
// listens at addr. addr may list several addresses separated by ";" (as
// dubbo-go's reference URL does): the consumer then picks one at random
// for each call, avoiding those it knows are gone.
func NewConsumer(t testing.TB, addr string, cfg ConsumerConfig) *Consumer {
	t.Helper()
	c, err := Dial(addr, cfg)
	if err != nil {
		t.Fatalf("dubbokit: consumer of %s: %v", addr, err)
	}
	return c
}

// Dial makes a consumer of the provider or proxy at addr.
func Dial(addr string, cfg ConsumerConfig) (c *Consumer, err error) {
	Quiet()
	if cfg.Interface == "" {
		cfg.Interface = Greeter
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	// dubbo-go gives no error when nothing listens: it tries for 6s and
	// then panics on a nil invoker. Fail fast and clearly instead.
	var urls []string
	for _, a := range strings.Split(addr, ";") {
		probe, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return nil, fmt.Errorf("dubbokit: dial %s: %w", a, err)
		}
		probe.Close()
		urls = append(urls, "dubbo://"+a)
	}
	cli, err := client.NewClient()
	if err != nil {
		return nil, fmt.Errorf("dubbokit: %w", err)
	}
	opts := []client.ReferenceOption{
		client.WithURL(strings.Join(urls, ";")),
		client.WithProtocolDubbo(),
		client.WithSerialization(constant.Hessian2Serialization),
		client.WithFilter(ctxAttachmentsFilter),
	}
	if cfg.Retries > 0 {
		opts = append(opts, client.WithClusterFailOver(), client.WithRetries(cfg.Retries))
	} else {
		opts = append(opts, client.WithClusterFailFast(), client.WithRetries(0))
	}
	if cfg.Version != "" {
		opts = append(opts, client.WithVersion(cfg.Version))
	}
	if cfg.Group != "" {
		opts = append(opts, client.WithGroup(cfg.Group))
	}
	// dubbo-go panics when it cannot build a reference.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("dubbokit: dial %s: dubbo-go panicked: %v", addr, r)
		}
	}()
	conn, err := cli.Dial(cfg.Interface, opts...)
	if err != nil {
		return nil, fmt.Errorf("dubbokit: dial %s: %w", addr, err)
	}
	return &Consumer{addr: addr, conn: conn, timeout: cfg.Timeout}, nil
}

// Call invokes method with one string argument and returns the string answer.
// The call ends at the consumer's timeout or ctx's deadline, whichever is
// first.
func (c *Consumer) Call(ctx context.Context, method, arg string) (string, error) {
	timeout := c.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	// The timeout goes with each call: dubbo-go v3.3.0's CallUnary ignores
	// the reference's timeout and, without this option, waits for ever.
	var out string
	if err := c.conn.CallUnary(ctx, []any{arg}, &out, method, client.WithCallRequestTimeout(timeout)); err != nil {
		return "", err
	}
	return out, nil
}

// SayHello calls sayHello(name).
func (c *Consumer) SayHello(ctx context.Context, name string) (string, error) {
	return c.Call(ctx, MethodSayHello, name)
}

// Echo calls echo(s).
func (c *Consumer) Echo(ctx context.Context, s string) (string, error) {
	return c.Call(ctx, MethodEcho, s)
}
