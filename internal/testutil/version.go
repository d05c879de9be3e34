package testutil

import (
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/internal/cli"
)

// CheckVersionFlag builds the command in dir (a cmd/<name> folder) as a user
// would, runs it with --version, and checks that it prints "<name> version
// <v>" where v is the module version and VCS stamp the binary's own build
// info holds. The build asks for VCS stamping (-buildvcs=auto, whatever
// GOFLAGS says); in a git checkout whose root has a .git folder the stamp
// must then name the checkout's HEAD. (The go command does not stamp builds
// from a git worktree, whose .git is a file.)
func CheckVersionFlag(t *testing.T, dir, name string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, dir).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", name, err, out)
	}
	want := name + " version " + cli.VersionOf(bi) + "\n"
	if string(out) != want {
		t.Fatalf("%s --version printed %q, want %q", name, out, want)
	}
	if !strings.HasPrefix(string(out), name+" version devel") && bi.Main.Version == "(devel)" {
		t.Fatalf("a build inside the repository says %q, want devel", out)
	}
	top, err := exec.Command("git", "-C", dir, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return // not a git checkout: nothing to stamp
	}
	if st, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !st.IsDir() {
		return // a worktree: the go command does not stamp it
	}
	head, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	if rev := strings.TrimSpace(string(head))[:12]; !strings.Contains(string(out), "commit "+rev) {
		t.Fatalf("%s --version printed %q, want the checkout's commit %s", name, out, rev)
	}
}
