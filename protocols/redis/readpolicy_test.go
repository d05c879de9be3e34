package redis

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// TestReadPolicyOption: prefer_replica needs cluster mode; unknown policies
// are refused.
func TestReadPolicyOption(t *testing.T) {
	for _, tc := range []struct {
		opts codec.Options
		err  string
	}{
		{codec.Options{OptMode: "cluster", OptReadPolicy: "prefer_replica"}, ""},
		{codec.Options{OptReadPolicy: "primary"}, ""},
		{codec.Options{OptReadPolicy: "prefer_replica"}, "needs mode cluster"},
		{codec.Options{OptMode: "cluster", OptReadPolicy: "replica"}, `"replica" is not primary or prefer_replica`},
	} {
		_, err := New(tc.opts, codec.PeerClient)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(%v) = %v, want %q", tc.opts, err, tc.err)
		}
	}
}

// shardsOf waits until CLUSTER SLOTS lists a replica for every range, and
// returns each primary's replica.
func shardsOf(t *testing.T, seed *server) map[string]string {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: seed.Addr})
	defer c.Close()
	var shards map[string]string
	testutil.MustPoll(t, 20*time.Second, "CLUSTER SLOTS to list a replica per range", func() (bool, error) {
		//lint:ignore SA1019 the proxy reads CLUSTER SLOTS too; the test compares the same view
		slots, err := c.ClusterSlots(ctx(t)).Result()
		shards = map[string]string{}
		for _, r := range slots {
			if len(r.Nodes) > 1 {
				shards[r.Nodes[0].Addr] = r.Nodes[1].Addr
			}
		}
		return err == nil && len(slots) > 0 && len(shards) == len(slots), fmt.Errorf("CLUSTER SLOTS: %v, %v", slots, err)
	})
	return shards
}

var callsRE = regexp.MustCompile(`(?m)^cmdstat_(\w+):calls=(\d+),`)

// commandCalls is a node's INFO commandstats: calls by command, lower case.
func commandCalls(t *testing.T, addr string) map[string]int {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(ctx(t), "commandstats").Result()
	must(t, err, "INFO commandstats on %s", addr)
	out := map[string]int{}
	for _, m := range callsRE.FindAllStringSubmatch(info, -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] = n
	}
	return out
}

// TestReadPolicyPreferReplica: a cluster of three primaries with a replica
// each (redis-cli --cluster create --cluster-replicas 1) behind a proxy with
// read_policy prefer_replica. Writes go to the primaries, GET and MGET to
// the replicas (INFO commandstats of every node says so), and when a
// replica dies its shard's reads go to the primary.
func TestReadPolicyPreferReplica(t *testing.T) {
	nodes := startClusterWith(t, 3, 1)
	shards := shardsOf(t, nodes[0])
	byAddr := map[string]*server{}
	for _, n := range nodes {
		byAddr[n.Addr] = n
		nc := goredis.NewClient(&goredis.Options{Addr: n.Addr})
		must(t, nc.ConfigResetStat(ctx(t)).Err(), "CONFIG RESETSTAT on %s", n.Addr)
		nc.Close()
	}
	proxy := startProxy(t, map[string]string{OptMode: "cluster", OptReadPolicy: "prefer_replica"},
		[]obj{prefixRoute("all", "", "c", nil)}, clusterConfig("c", nodes[0].Addr))
	c, cx := client(t, proxy), ctx(t)
	var keys []string
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("key:%d", i)
		keys = append(keys, k)
		must(t, c.Set(cx, k, k, 0).Err(), "SET %s", k)
	}
	// Replication is asynchronous: poll until every replica has the keys.
	testutil.MustPoll(t, 10*time.Second, "every key on the replicas", func() (bool, error) {
		for _, k := range keys {
			if v, err := c.Get(cx, k).Result(); err != nil || v != k {
				return false, fmt.Errorf("GET %s through the proxy = %q, %v", k, v, err)
			}
		}
		return true, nil
	})
	vals, err := c.MGet(cx, keys...).Result()
	must(t, err, "MGET across slots")
	for i, k := range keys {
		if vals[i] != k {
			t.Fatalf("MGET[%d] = %v, want %s", i, vals[i], k)
		}
	}
	sets := 0
	for primary, replica := range shards {
		p, r := commandCalls(t, primary), commandCalls(t, replica)
		if p["get"] != 0 || p["mget"] != 0 {
			t.Errorf("primary %s served reads: get %d, mget %d", primary, p["get"], p["mget"])
		}
		if r["get"] == 0 || r["mget"] == 0 {
			t.Errorf("replica %s served no reads: get %d, mget %d", replica, r["get"], r["mget"])
		}
		if r["readonly"] == 0 {
			t.Errorf("replica %s never got READONLY", replica)
		}
		sets += p["set"]
	}
	if sets != len(keys) {
		t.Errorf("the primaries ran %d SETs, want %d", sets, len(keys))
	}

	// A replica goes away: its shard's reads go to the primary.
	var primary, replica string
	for primary, replica = range shards {
		break
	}
	byAddr[replica].Stop()
	onShard := keysOn(t, keys, primary)
	if len(onShard) == 0 {
		t.Fatalf("no key of 30 on the shard of %s", primary)
	}
	for _, k := range onShard {
		if v, err := c.Get(cx, k).Result(); err != nil || v != k {
			t.Fatalf("GET %s with its replica gone = %q, %v", k, v, err)
		}
	}
	if n := commandCalls(t, primary)["get"]; n < len(onShard) {
		t.Errorf("primary %s served %d GETs after its replica died, want at least %d", primary, n, len(onShard))
	}
}

// keysOn lists the keys whose slot primary serves, by the primary's own
// CLUSTER SLOTS.
func keysOn(t *testing.T, keys []string, primary string) []string {
	t.Helper()
	n := goredis.NewClient(&goredis.Options{Addr: primary})
	defer n.Close()
	//lint:ignore SA1019 the proxy reads CLUSTER SLOTS too; the test compares the same view
	slots, err := n.ClusterSlots(ctx(t)).Result()
	must(t, err, "CLUSTER SLOTS on %s", primary)
	var out []string
	for _, k := range keys {
		s := Slot(k)
		for _, r := range slots {
			if s >= r.Start && s <= r.End && r.Nodes[0].Addr == primary {
				out = append(out, k)
			}
		}
	}
	return out
}
