package dubbokit

import (
	"fmt"
	"net"
	"time"

	getty "github.com/apache/dubbo-getty"
	gxsync "github.com/dubbogo/gost/sync"

	dubbogetty "dubbo.apache.org/dubbo-go/v3/remoting/getty"
)

// sessionConf is dubbo-go's server session configuration with its durations
// parsed; dubbo-go keeps the parsed values private, so the kit parses the
// same strings with the same defaults.
type sessionConf struct {
	raw             dubbogetty.ServerConfig
	sessionNumber   int
	sessionTimeout  time.Duration
	heartbeatPeriod time.Duration
	keepAlivePeriod time.Duration
	readTimeout     time.Duration
	writeTimeout    time.Duration
	waitTimeout     time.Duration
}

// serverSessionConf reads the config dubbogetty.NewServer just loaded (the
// defaults, as the kit sets no dubbo-go root config).
func serverSessionConf() (*sessionConf, error) {
	raw := dubbogetty.GetServerConfig()
	c := &sessionConf{raw: raw, sessionNumber: raw.SessionNumber}
	sp := raw.GettySessionParam
	for _, d := range []struct {
		dst *time.Duration
		s   string
		def time.Duration
	}{
		{&c.sessionTimeout, raw.SessionTimeout, 180 * time.Second},
		{&c.heartbeatPeriod, raw.HeartbeatPeriod, 60 * time.Second},
		{&c.keepAlivePeriod, sp.KeepAlivePeriod, 180 * time.Second},
		{&c.readTimeout, sp.TcpReadTimeout, time.Second},
		{&c.writeTimeout, sp.TcpWriteTimeout, 5 * time.Second},
		{&c.waitTimeout, sp.WaitTimeout, time.Second},
	} {
		*d.dst = d.def
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return nil, fmt.Errorf("dubbokit: getty server config: %w", err)
		}
		*d.dst = v
	}
	return c, nil
}

// taskPool is the pool getty runs request handlers on, as dubbo-go's server
// sets it up: without one, a connection's requests run one after another.
func (c *sessionConf) taskPool() getty.ServerOption {
	return getty.WithServerTaskPool(gxsync.NewTaskPoolSimple(c.raw.GrPoolSize))
}

// setupSession does for a new connection what dubbo-go's getty server does:
// TCP options, then dubbo-go's dubbo codec and request handler.
func (c *sessionConf) setupSession(s getty.Session, srv *dubbogetty.Server, h getty.EventListener) error {
	tcp, ok := s.Conn().(*net.TCPConn)
	if !ok {
		return fmt.Errorf("dubbokit: session conn %T is not TCP", s.Conn())
	}
	sp := c.raw.GettySessionParam
	if err := tcp.SetNoDelay(sp.TcpNoDelay); err != nil {
		return err
	}
	if err := tcp.SetKeepAlive(sp.TcpKeepAlive); err != nil {
		return err
	}
	if sp.TcpKeepAlive {
		if err := tcp.SetKeepAlivePeriod(c.keepAlivePeriod); err != nil {
			return err
		}
	}
	if err := tcp.SetReadBuffer(sp.TcpRBufSize); err != nil {
		return err
	}
	if err := tcp.SetWriteBuffer(sp.TcpWBufSize); err != nil {
		return err
	}
	s.SetName(sp.SessionName)
	s.SetMaxMsgLen(sp.MaxMsgLen)
	s.SetPkgHandler(dubbogetty.NewRpcServerPackageHandler(srv))
	s.SetEventListener(h)
	s.SetReadTimeout(c.readTimeout)
	s.SetWriteTimeout(c.writeTimeout)
	s.SetCronPeriod(int(c.heartbeatPeriod / time.Millisecond))
	s.SetWaitTime(c.waitTimeout)
	return nil
}
