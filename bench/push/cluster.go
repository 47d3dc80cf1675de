//go:build linux

package main

import "flag"

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
