package istio

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"istio.io/istio/pkg/hbone"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// Ambient: ztunnel carries a caller's connection to the waypoint over
// HBONE (HTTP/2 CONNECT in Istio mTLS), naming the original destination.
// Istio's own HBONE dialer (istio.io/istio/pkg/hbone) plays ztunnel here.

// ztunnelStandIn tunnels each plaintext connection it accepts to dest
// through the waypoint's HBONE port, over one HTTP/2 connection made with
// a certificate of ServiceAccount ns/sa from istiod.
type ztunnelStandIn struct {
	dialer hbone.Dialer
}

func newZtunnelStandIn(t *testing.T, c *kubeenv.Cluster, m *istiod, ns, sa, hboneAddr, waypointID string) *ztunnelStandIn {
	t.Helper()
	cfg := identity.ClientConfig(istioWorkload(t, c, m, ns, sa), []string{waypointID}, "")
	cfg.NextProtos = []string{"h2"}
	return &ztunnelStandIn{dialer: hbone.NewDialer(hbone.Config{ProxyAddress: hboneAddr, TLS: cfg})}
}

// to returns the address of a relay that tunnels to dest.
func (z *ztunnelStandIn) to(t *testing.T, dest string) string {
	t.Helper()
	return startRelay(t, "ztunnel stand-in to "+dest, nil, func() (net.Conn, error) { return z.dialer.Dial("tcp", dest) }).Addr
}

// TestAmbientHBONE: two Dubbo services on port 20880 behind one waypoint
// that terminates HBONE; a ztunnel stand-in reaches each through the same
// HBONE port, and each call lands on its own service, the one the waypoint
// binds 20880 for and the one it serves only through HBONE alike. A
// CONNECT to a destination the waypoint does not serve is refused.
func TestAmbientHBONE(t *testing.T) {
	c, m := needMesh(t)
	const ns = "ambient"
	c.MustNamespace(t, ns)
	scopeToNamespace(t, c, ns)
	vips := map[string]string{}
	for _, svc := range []string{"alpha", "beta"} {
		vips[svc] = startDubboService(t, c, ns, svc, dubboPort, nil)
	}
	ctrl := startController(t, c)
	const ip = "127.0.0.34"
	hboneAddr := fmt.Sprintf("%s:%d", ip, testutil.FreePort(t))
	w := startWaypoint(t, c, m, ctrl.XDSAddr, waypointConfig{Namespace: ns, ListenIP: ip, Args: []string{"--hbone-address=" + hboneAddr}})
	w.waitConfig(t, "both services' destinations", func(d configDump) bool {
		return strings.Contains(d.raw, vips["alpha"]+":20880") && strings.Contains(d.raw, vips["beta"]+":20880")
	})
	testutil.WaitDialable(t, hboneAddr)

	z := newZtunnelStandIn(t, c, m, ns, "ztunnel", hboneAddr, w.ID)
	for _, svc := range []string{"alpha", "beta"} {
		consumer := dubbokit.NewConsumer(t, z.to(t, net.JoinHostPort(vips[svc], "20880")), dubbokit.ConsumerConfig{Version: dubboVersion, Timeout: callTimeout})
		wantAnswer(t, "an HBONE caller of "+svc, consumer, dubbokit.MethodSayHello, "x", svc+": hello x")
	}

	_, err := z.dialer.Dial("tcp", "10.255.255.1:20880")
	if err == nil || !strings.Contains(err.Error(), "round trip failed") {
		t.Fatalf("CONNECT to a destination the waypoint does not serve: %v; want it refused", err)
	}
	t.Logf("unknown destination: %v", err)
}
