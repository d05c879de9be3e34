package client

import "testing"

func TestNodeStatesTheWorkloadIdentityOnlyWhenThereIsOne(t *testing.T) {
	for _, id := range []string{"", "spiffe://cluster.local/ns/demo/sa/rosetta-waypoint"} {
		n, err := buildNode(&Options{NodeID: "p", Namespace: "demo", WorkloadID: id})
		if err != nil {
			t.Fatal(err)
		}
		f, ok := n.GetMetadata().GetFields()["workloadIdentity"]
		if ok != (id != "") || f.GetStringValue() != id {
			t.Errorf("WorkloadID %q: metadata workloadIdentity = %v (present %v)", id, f, ok)
		}
		if got := n.GetMetadata().GetFields()["namespace"].GetStringValue(); got != "demo" {
			t.Errorf("namespace = %q", got)
		}
	}
}

func TestNodeSaysHBONEOnlyWhenTheProxyTerminatesIt(t *testing.T) {
	for _, on := range []bool{false, true} {
		n, err := buildNode(&Options{NodeID: "p", Namespace: "demo", HBONE: on})
		if err != nil {
			t.Fatal(err)
		}
		f, ok := n.GetMetadata().GetFields()["hbone"]
		if ok != on || on && f.GetStringValue() != "true" {
			t.Errorf("HBONE %v: metadata hbone = %v (present %v)", on, f, ok)
		}
	}
}
