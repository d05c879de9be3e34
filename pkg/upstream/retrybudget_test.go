package upstream

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

func budgetCluster(rb *clusterv3.CircuitBreakers_Thresholds_RetryBudget) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxRetries:  wrapperspb.UInt32(1000), // the budget, when set, replaces it
			RetryBudget: rb,
		}}},
	}
}

// retriesAllowed is how many retries the cluster lets be in flight at once
// while inflight requests are.
func retriesAllowed(t *testing.T, cl *Cluster, inflight int) int {
	t.Helper()
	for range inflight {
		if !cl.Acquire() {
			t.Fatal("request refused")
		}
	}
	n := 0
	for cl.AcquireRetry() {
		n++
		if n > 10000 {
			t.Fatal("no retry limit")
		}
	}
	for range n {
		cl.ReleaseRetry()
	}
	for range inflight {
		cl.Release()
	}
	return n
}

func TestRetryBudget(t *testing.T) {
	cases := []struct {
		name     string
		rb       *clusterv3.CircuitBreakers_Thresholds_RetryBudget
		inflight int
		want     int
	}{
		{"Envoy's defaults, few requests: the minimum", &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}, 5, 3},
		{"Envoy's defaults, 100 requests: 20%", &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}, 100, 20},
		{"50% of 40", &clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetPercent: &typev3.Percent{Value: 50}, MinRetryConcurrency: wrapperspb.UInt32(1)}, 40, 20},
		{"0% and no minimum: no retry", &clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetPercent: &typev3.Percent{Value: 0}, MinRetryConcurrency: wrapperspb.UInt32(0)}, 100, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := NewManager(nil).Build([]*clusterv3.Cluster{budgetCluster(tc.rb)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := retriesAllowed(t, cl["c"], tc.inflight); got != tc.want {
				t.Errorf("%d retries allowed with %d requests in flight, want %d", got, tc.inflight, tc.want)
			}
		})
	}
	cl, err := NewManager(nil).Build([]*clusterv3.Cluster{budgetCluster(nil)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := retriesAllowed(t, cl["c"], 100); got != 1000 {
		t.Errorf("without a budget: %d retries allowed, want max_retries (1000)", got)
	}
}

func TestRetryBudgetRefusedNamingTheField(t *testing.T) {
	for _, tc := range []struct {
		rb   *clusterv3.CircuitBreakers_Thresholds_RetryBudget
		want string
	}{
		{&clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetPercent: &typev3.Percent{Value: 120}}, "circuit_breakers.thresholds[0].retry_budget.budget_percent: 120 is not between 0 and 100"},
		{&clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetInterval: durationpb.New(1)}, "circuit_breakers.thresholds[0].retry_budget.budget_interval: not supported"},
	} {
		_, err := NewManager(nil).Build([]*clusterv3.Cluster{budgetCluster(tc.rb)}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}
