package istio

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// Timing of TestWaypointRotation. istiod honours whole seconds from 1 s;
// the proxy renews at half the remaining lifetime (less up to a twentieth),
// so a 6 s certificate is replaced about every 3 s, which leaves a loaded
// machine 3 s to get the next one before the old expires.
const (
	rotationTTL = 6 * time.Second
	// rotationsUnderLoad is how many rotations the calls must span.
	rotationsUnderLoad = 2
	// rotationWait bounds the load: 2 rotations take about 6 s.
	rotationWait = 40 * time.Second
	// loadInterval paces the calls, one at a time.
	loadInterval = 10 * time.Millisecond
)

// TestWaypointRotation: Rosetta's waypoint holds a 6 s certificate from
// istiod and rotates it while a dubbo-go caller's calls flow through it
// over Istio mTLS to a provider behind a sidecar. No call fails and no
// connection on either side of the waypoint ends; a Dubbo connection
// opened before the rotations still serves after them; the proxy's
// metrics count the rotations and move the expiry forward; and after
// them a new handshake in each direction uses a new certificate: the one
// the waypoint presents to a new caller, and the one it presents to a
// provider it connects to for the first time.
func TestWaypointRotation(t *testing.T) {
	c, m := needMesh(t)
	const ns, callerNS = "rotation", "shop"
	for _, n := range []string{ns, callerNS} {
		c.MustNamespace(t, n)
	}
	scopeToNamespace(t, c, ns)
	greeter := startSecuredProvider(t, c, m, securedProviderConfig{Namespace: ns, Service: "greeter", ServiceAccount: "greeter", Name: "v1"})
	// Called only after the rotations, so the waypoint's first connection
	// to it is made with a rotated certificate.
	late := startSecuredProvider(t, c, m, securedProviderConfig{Namespace: ns, Service: "late", ServiceAccount: "late", Name: "late"})
	ctrl := startController(t, c)
	wp := startWaypoint(t, c, m, ctrl.XDSAddr, waypointConfig{Namespace: ns, CertTTL: rotationTTL})
	for _, p := range []*securedProvider{greeter, late} {
		wp.waitChains(t, listenerName(p.Host, p.Port), transportTLS, transportRaw)
		testutil.WaitDialable(t, wp.addr(p.Port))
	}

	// The stand-in sidecars record their peers' certificates: the
	// callers' the waypoint's server certificate, the provider's the
	// waypoint's client certificate.
	frontend, callerOut := meshCallerSidecar(t, c, m, callerNS, "frontend", wp.addr(greeter.Port), wp.ID)
	wantAnswer(t, "the mTLS caller", frontend, dubbokit.MethodSayHello, "frontend", "v1: hello frontend")
	// dubbo-go keeps opening connections for a while (getty fills its set
	// of 16 in the background, further and further apart), so one
	// connection is held here, on the Dubbo wire, to be used again after
	// the rotations.
	pinnedOut := mtlsOriginator(t, istioWorkload(t, c, m, callerNS, "frontend"), wp.addr(greeter.Port), wp.ID)
	pinned := dubbokit.DialRaw(t, pinnedOut.Addr)
	wantRawAnswer(t, "the connection opened before the rotations", pinned, 1, "before", "v1: before")
	startServer := append(callerOut.peerLeaves(), pinnedOut.peerLeaves()...)
	startClient := greeter.Terminator.peerLeaves()
	// dubbokit connects once and closes before dubbo-go connects, to fail
	// fast when nothing listens; that connection ends on its own.
	if err := testutil.Poll(10*time.Second, "the end of dubbokit's probe connection", func() (bool, error) {
		return callerOut.endedConns() >= 1, nil
	}); err != nil {
		t.Fatal(err)
	}
	callersEnded, upstreamsEnded := callerOut.endedConns(), greeter.Terminator.endedConns()
	rotations0, expiry0 := wp.identityMetrics(t)

	// The load: calls paced by a ticker until the proxy has rotated twice.
	var calls, failed int
	var firstErr error
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(loadInterval)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			arg := fmt.Sprint("call ", n)
			got, err := frontend.Call(context.Background(), dubbokit.MethodEcho, arg)
			if err == nil && got != "v1: "+arg {
				err = fmt.Errorf("echo(%q) = %q", arg, got)
			}
			calls++
			if err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
			}
		}
	}()
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		<-done // calls, failed and firstErr are the test's from here
	})
	defer stopLoad()
	var rotations float64
	var expiry time.Time
	err := testutil.Poll(rotationWait, fmt.Sprintf("%d rotations of the waypoint's certificate under load", rotationsUnderLoad), func() (bool, error) {
		rotations, expiry = wp.identityMetrics(t)
		return rotations-rotations0 >= rotationsUnderLoad, nil
	})
	stopLoad()
	t.Logf("%d calls over %v rotations of the waypoint's certificate (%v before the load); expiry %v, then %v; the caller's sidecar made %d handshakes with the waypoint",
		calls, rotations-rotations0, rotations0, expiry0.Format(time.TimeOnly), expiry.Format(time.TimeOnly), len(callerOut.peerLeaves()))
	if err != nil {
		t.Fatalf("rosetta_identity_rotations_total: %v (from %v to %v)", err, rotations0, rotations)
	}
	if failed > 0 {
		t.Errorf("%d of %d calls failed across the rotations, first: %v", failed, calls, firstErr)
	}
	if calls < 10 {
		t.Errorf("only %d calls over the rotations", calls)
	}
	if !expiry.After(expiry0) {
		t.Errorf("rosetta_identity_cert_expiry_timestamp_seconds went from %v to %v across %v rotations, want it later",
			expiry0, expiry, rotations-rotations0)
	}
	// A rotation drops no connection, on either side of the waypoint.
	if n := callerOut.endedConns() - callersEnded; n > 0 {
		t.Errorf("%d of the caller's connections to the waypoint ended during the load, want none", n)
	}
	if n := greeter.Terminator.endedConns() - upstreamsEnded; n > 0 {
		t.Errorf("%d of the waypoint's connections to the provider ended during the load, want none", n)
	}
	wantRawAnswer(t, "the connection opened before the rotations", pinned, 2, "after", "v1: after")

	// A new caller, to the provider not called yet: new handshakes on
	// both sides of the waypoint.
	again, againOut := meshCallerSidecar(t, c, m, callerNS, "frontend", wp.addr(late.Port), wp.ID)
	wantAnswer(t, "a caller after the rotations", again, dubbokit.MethodSayHello, "again", "late: hello again")
	wantRotated(t, "the waypoint's server certificate", startServer, againOut.peerLeaves(), expiry0)
	wantRotated(t, "the waypoint's client certificate", startClient, late.Terminator.peerLeaves(), expiry0)

	for _, r := range []*relay{callerOut, pinnedOut, againOut, greeter.Terminator, late.Terminator} {
		if f := r.failed(); len(f) > 0 {
			t.Errorf("%s saw failed handshakes or dials: %v", r.Addr, f)
		}
	}
}

// wantRawAnswer calls echo(arg) with request id on conn and fails the test
// unless the answer is want.
func wantRawAnswer(t *testing.T, who string, conn *dubbokit.RawConn, id int64, arg, want string) {
	t.Helper()
	if err := conn.Send(id, dubbokit.Call{Version: dubboVersion, Method: dubbokit.MethodEcho, Arg: arg}); err != nil {
		t.Fatalf("%s: echo(%q): %v", who, arg, err)
	}
	resp, err := conn.Read(callTimeout)
	if err != nil || resp.ID != id || resp.Status != dubbokit.StatusOK || resp.Err != "" || resp.Value != want {
		t.Fatalf("%s: echo(%q) = %+v, %v; want %q", who, arg, resp, err, want)
	}
}

// identityMetrics reads the waypoint's certificate rotations and the
// expiry of the certificate it uses from its /metrics; the test fails
// when it exports neither.
func (w *waypoint) identityMetrics(t *testing.T) (rotations float64, expiry time.Time) {
	t.Helper()
	text := httpGet(t, "http://"+w.Admin+"/metrics")
	rotations, ok := metric(text, "rosetta_identity_rotations_total")
	exp, ok2 := metric(text, "rosetta_identity_cert_expiry_timestamp_seconds")
	if !ok || !ok2 {
		t.Fatalf("the waypoint's /metrics lack rosetta_identity_rotations_total or rosetta_identity_cert_expiry_timestamp_seconds:\n%s",
			testutil.Tail([]byte(text), 4000))
	}
	return rotations, time.Unix(int64(exp), 0)
}

// wantRotated fails the test unless after's last certificate, seen in a
// handshake after the rotations, is another than every one of before
// (seen when the load began) and expires after expiry, the expiry of the
// certificate in use when the load began.
func wantRotated(t *testing.T, what string, before, after []*x509.Certificate, expiry time.Time) {
	t.Helper()
	if len(before) == 0 || len(after) == 0 {
		t.Fatalf("%s: %d handshakes before the rotations and %d after, want some of each", what, len(before), len(after))
	}
	last := after[len(after)-1]
	for _, b := range before {
		if last.SerialNumber.Cmp(b.SerialNumber) == 0 {
			t.Errorf("%s after the rotations is serial %s, the one of before", what, last.SerialNumber)
			return
		}
	}
	if !last.NotAfter.After(expiry) {
		t.Errorf("%s after the rotations expires at %v, not after %v, when the load began", what, last.NotAfter, expiry)
	}
}
