//go:build linux

package main

import (
	"flag"
	"strconv"
	"strings"
	"time"
)

// crossNode is for two-node runs through a broker: -ws on one Caddy node,
// -push on another. The publishing node's "delivered" counts only its own
// connections (none here: docs/cluster.md), so the run waits for, and
// checks arrivals against, what the subscription plan expects instead.
var crossNode = flag.Bool("cross-node", false,
	"subscribers (-ws) and publisher (-push) are on different nodes sharing a broker: expect the subscription plan's deliveries instead of the publishing node's counts")

// wantDelivered is how many deliveries the run waits for and must see.
func wantDelivered(c *config, pr *publishResult) int64 {
	if *crossNode {
		return expectedTotal(&c.plan, c.conns)
	}
	return pr.delivered
}

// cpuPids lists every server-side process of a run (both Caddy nodes and
// every broker server of a cluster): their CPU is summed per delivery.
var cpuPids = flag.String("cpu-pids", "", "comma-separated process ids whose CPU (utime+stime) is summed per delivery: the whole cluster's cost")

// pidsCPU sums the CPU time of the -cpu-pids processes (those still
// running).
func pidsCPU() time.Duration {
	var sum time.Duration
	for _, f := range strings.Split(*cpuPids, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			continue
		}
		if d, err := procCPU(pid); err == nil {
			sum += d
		}
	}
	return sum
}
