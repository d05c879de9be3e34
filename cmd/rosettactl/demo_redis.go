package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	redisexample "github.com/rosetta-mesh/rosetta/examples/redis"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// redisDemoKeys are the keys the Redis part writes, with and without the
// prefix demo.yaml routes on, and their values.
var redisDemoKeys = [][2]string{
	{"user:1", "alice"},
	{"b:cart:1", "3 items"},
	{"user:2", "bob"},
	{"b:cart:2", "1 item"},
}

// demoRedis is an embedded Redis server the demo started for a cluster
// endpoint.
type demoRedis struct {
	*miniredis.Miniredis
	name, cluster string
}

// runRedisDemo is the demo's Redis part: go-redis with its defaults talks to
// two embedded Redis servers through the proxy.
func runRedisDemo(ctx context.Context, out io.Writer, o demoOptions) error {
	start := time.Now()
	boot, source, err := loadConfig(o.redisFile, redisexample.DemoConfig, redisexample.DemoConfigPath)
	if err != nil {
		return err
	}
	l, err := demoListener(boot, "Redis", "redis", o.fixedPorts)
	if err != nil {
		return err
	}
	var servers []*demoRedis
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	err = startPeers(&boot.Resources, o.fixedPorts, func(listen, name, cluster string) (string, error) {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr(listen); err != nil {
			return "", fmt.Errorf("demo: Redis server for cluster %s: %w", cluster, err)
		}
		servers = append(servers, &demoRedis{Miniredis: m, name: name, cluster: cluster})
		return m.Addr(), nil
	})
	if err != nil {
		return err
	}

	addr, stop, err := startDemoProxy(boot.Resources, l.name, source, o.verbose)
	if err != nil {
		return err
	}
	defer stop()
	// go-redis's defaults: it opens each connection with HELLO 3 and
	// CLIENT SETINFO, which the proxy answers itself.
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()

	printRedisSetup(out, source, l, addr, servers)
	if err := printRedisLocal(ctx, out, c); err != nil {
		return err
	}
	if err := printRedisKeys(ctx, out, c, l, servers); err != nil {
		return err
	}
	if err := printRedisMGet(ctx, out, c, servers); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nDone in %s. Ask the same question of any config with:\n", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(out, "  rosettactl route %s --attr key=%s\n", redisexample.DemoConfigPath, redisDemoKeys[1][0])
	return nil
}

func printRedisSetup(out io.Writer, source string, l *rosettaListener, addr string, servers []*demoRedis) {
	fmt.Fprintln(out, "Rosetta demo, Redis: go-redis v9 talks to two Redis servers (miniredis) through the proxy")
	printProxy(out, source, l, addr)
	printPeers(out, "servers", servers, func(s *demoRedis) (string, string, string) { return s.name, s.Addr(), s.cluster })
}

// printRedisLocal shows commands the proxy answers without a server.
func printRedisLocal(ctx context.Context, out io.Writer, c *goredis.Client) error {
	fmt.Fprintln(out, "\nAnswered by the proxy itself (go-redis also sent HELLO 3 and CLIENT SETINFO on connecting):")
	pong, err := c.Ping(ctx).Result()
	if err != nil {
		return fmt.Errorf("demo: PING: %w", err)
	}
	fmt.Fprintf(out, "  PING -> %s\n", pong)
	v, err := c.Do(ctx, "HELLO", "3").Result()
	if err != nil {
		return fmt.Errorf("demo: HELLO: %w", err)
	}
	hello, ok := v.(map[any]any)
	if !ok {
		return fmt.Errorf("demo: HELLO 3 answered %T, want a map", v)
	}
	fmt.Fprintf(out, "  HELLO 3 -> server=%v version=%v proto=%v mode=%v\n", hello["server"], hello["version"], hello["proto"], hello["mode"])
	return nil
}

// printRedisKeys SETs the demo's keys through the proxy and asks every
// server directly which keys it holds.
func printRedisKeys(ctx context.Context, out io.Writer, c *goredis.Client, l *rosettaListener, servers []*demoRedis) error {
	fmt.Fprintln(out, "\nSET through the proxy, then each server asked directly whether it holds the key:")
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	header := "KEY\tROUTE\tCONFIGURED"
	for _, s := range servers {
		header += "\t" + s.name
	}
	fmt.Fprintln(tw, header)
	for _, kv := range redisDemoKeys {
		if err := c.Set(ctx, kv[0], kv[1], 0).Err(); err != nil {
			return fmt.Errorf("demo: SET %s: %w", kv[0], err)
		}
		route, configured := routeForAttrs(l, codec.Map{"command": "SET", "key": kv[0]})
		row := fmt.Sprintf("%s\t%s\t%s", kv[0], route, configured)
		for _, s := range servers {
			held := "-"
			if s.Exists(kv[0]) {
				held = "yes"
			}
			row += "\t" + held
		}
		fmt.Fprintln(tw, row)
	}
	return tw.Flush()
}

// printRedisMGet reads every key and one missing key with one MGET, which
// the proxy splits per server and merges in key order.
func printRedisMGet(ctx context.Context, out io.Writer, c *goredis.Client, servers []*demoRedis) error {
	keys := make([]string, 0, len(redisDemoKeys)+1)
	for _, kv := range redisDemoKeys {
		keys = append(keys, kv[0])
	}
	keys = append(keys, "missing")
	before := make([]int, len(servers))
	for i, s := range servers {
		before[i] = s.CommandCount()
	}
	vals, err := c.MGet(ctx, keys...).Result()
	if err != nil {
		return fmt.Errorf("demo: MGET: %w", err)
	}
	var got []string
	for _, v := range vals {
		if v == nil {
			got = append(got, "(nil)")
			continue
		}
		got = append(got, fmt.Sprintf("%q", v))
	}
	var split []string
	for i, s := range servers {
		split = append(split, fmt.Sprintf("%s %d", s.name, s.CommandCount()-before[i]))
	}
	fmt.Fprintf(out, "\nOne MGET across both servers (commands each server received: %s), merged in key order:\n", strings.Join(split, ", "))
	fmt.Fprintf(out, "  MGET %s\n    -> [%s]\n", strings.Join(keys, " "), strings.Join(got, " "))
	return nil
}
