package kubeenv

import (
	"fmt"
	"os"
	"testing"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// Options says how Env.Main prepares the cluster.
type Options struct {
	// RepoRoot is the main module's folder, relative to the test's.
	RepoRoot string
	// Name names the scratch folder and the tests in messages ("API
	// server e2e").
	Name string
	// Setup runs once the API server is ready; an error makes every test
	// that calls Need fail under CI=true and skip otherwise. Processes it
	// starts with Cluster.Start stop with the cluster.
	Setup func(*Cluster) error
}

// Env is the cluster a test binary shares, or why it is not there.
type Env struct {
	Cluster *Cluster
	Err     error
	name    string
}

// Main starts the cluster in a scratch folder, runs Setup and the tests,
// and stops everything; it returns the exit code for os.Exit. When a test
// failed it prints the tail of every process's log and keeps the folder.
func (e *Env) Main(m *testing.M, o Options) int {
	e.name = o.Name
	if e.name == "" {
		e.name = "API server e2e"
	}
	tools, err := ToolsDir(o.RepoRoot)
	if err != nil {
		e.Err = err
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "rosetta-e2e-")
	if err != nil {
		e.Err = err
		return m.Run()
	}
	e.Cluster, e.Err = StartCluster(tools, dir)
	if e.Err == nil && o.Setup != nil {
		e.Err = o.Setup(e.Cluster)
	}
	code := m.Run()
	if e.Cluster != nil {
		e.Cluster.Stop()
		if code != 0 {
			fmt.Fprintf(os.Stderr, "%s\nkept %s\n", e.Cluster.LogTails(3000), dir)
			return code
		}
	}
	os.RemoveAll(dir)
	return code
}

// Need returns the cluster; when it is not there the test fails under
// CI=true and skips otherwise.
func (e *Env) Need(t testing.TB) *Cluster {
	t.Helper()
	if e.Err != nil {
		testutil.Unavailable(t, e.name, e.Err)
	}
	if e.Cluster == nil {
		testutil.Unavailable(t, e.name, fmt.Errorf("no cluster: TestMain did not call Env.Main"))
	}
	return e.Cluster
}
