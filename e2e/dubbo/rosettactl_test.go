package dubbo

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// rosettactl call and serve against dubbo-go v3.3.0 itself: call reaches a
// dubbo-go provider, and a dubbo-go consumer gets serve's fixed reply.

// buildRosettactl builds the command line from the main module.
func buildRosettactl(t *testing.T) string {
	t.Helper()
	return testutil.GoBuild(t, filepath.Join("..", ".."), "./cmd/rosettactl")
}

func TestRosettactlCallsDubboGoProvider(t *testing.T) {
	dubbokit.Quiet()
	bin := buildRosettactl(t)
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "v1", Version: "1.0.0", Group: "blue"})
	base := []string{"dubbo", p.Addr(), "--attr", "interface=" + dubbokit.Greeter, "--attr", "version=1.0.0", "--attr", "group=blue"}

	r, err := testutil.CtlCall(t, bin, append(base, "--attr", "method="+dubbokit.MethodSayHello, "--arg", `"x"`)...)
	if err != nil || r.Status != "ok" || r.Value != `"v1: hello x"` {
		t.Fatalf("sayHello: %v %+v", err, r)
	}
	r, err = testutil.CtlCall(t, bin, append(base, "--attr", "method="+dubbokit.MethodAttachment, "--attr", "env=canary", "--arg", `"env"`)...)
	if err != nil || r.Value != `"v1: canary"` {
		t.Fatalf("attachment: %v %+v", err, r)
	}
	r, err = testutil.CtlCall(t, bin, append(base, "--attr", "method="+dubbokit.MethodFail, "--arg", `"x"`)...)
	if err == nil || r.Status != "error" || !strings.Contains(r.Error, "v1: failed x") {
		t.Fatalf("fail: exit %v, %+v", err, r)
	}
	// The wrong version is a provider that does not exist for dubbo-go.
	r, err = testutil.CtlCall(t, bin, "dubbo", p.Addr(), "--attr", "interface="+dubbokit.Greeter, "--attr", "version=9.9.9",
		"--attr", "method="+dubbokit.MethodSayHello, "--arg", `"x"`)
	if err == nil || r.Status != "error" {
		t.Fatalf("wrong version: exit %v, %+v", err, r)
	}
}

func TestDubboGoConsumerCallsServe(t *testing.T) {
	dubbokit.Quiet()
	bin := buildRosettactl(t)
	serve := testutil.StartT(t, testutil.Command{Name: "rosettactl-serve", Path: bin,
		Args: []string{"serve", "dubbo", "127.0.0.1:0", "--reply", `"from serve"`}})
	m, err := serve.WaitLog(10*time.Second, regexp.MustCompile(`serving dubbo on (\S+)`))
	if err != nil {
		t.Fatal(err)
	}
	c := dubbokit.NewConsumer(t, m[1], dubbokit.ConsumerConfig{Version: "1.0.0"})
	ctx := dubbokit.WithAttachments(context.Background(), map[string]string{"env": "canary"})
	got, err := c.Call(ctx, dubbokit.MethodSayHello, "x")
	if err != nil || got != "from serve" {
		t.Fatalf("sayHello through serve: %q, %v", got, err)
	}
	if _, err := serve.WaitLog(5*time.Second, regexp.MustCompile(
		`dubbo request .*env="canary" interface="org.rosetta.Greeter" method="sayHello" .*version="1.0.0" types="Ljava/lang/String;" args=\["x"\]`)); err != nil {
		t.Fatal(err)
	}
}
