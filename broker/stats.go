package broker

import "sync/atomic"

// Stats counts what happened between a node and its broker server. Brokers
// that talk to a server (nats, redis) implement StatsReporter; the Caddy glue
// exposes the counters as Prometheus metrics (see docs/cluster.md).
type Stats struct {
	// Errors counts failed broker operations: publishes, history reads,
	// subscription changes and connection errors.
	Errors uint64
	// Disconnects counts lost connections to the broker server.
	Disconnects uint64
	// Reconnects counts connections restored after a loss.
	Reconnects uint64
	// GapsFilled counts gaps in live delivery (messages lost while
	// disconnected or dropped as a slow consumer) filled from history.
	GapsFilled uint64
	// GapsLost counts gaps that history could not fill (history off or
	// already evicted); the hub's clients see "not recovered" when they
	// reconnect with a position from before the gap.
	GapsLost uint64
	// Connected is 1 while the node is connected to the broker server.
	Connected uint64
	// Refreshes counts reloads of the server topology (the Redis Cluster
	// slot map).
	Refreshes uint64
	// Failovers counts changes of the servers in use seen by the broker:
	// Redis Cluster masters replaced.
	Failovers uint64
}

// StatsReporter is implemented by brokers that count their trouble.
type StatsReporter interface {
	Stats() Stats
}

// Counters is a concurrency-safe Stats that brokers embed.
type Counters struct {
	Errors, Disconnects, Reconnects, GapsFilled, GapsLost, Connected atomic.Uint64
	Refreshes, Failovers                                             atomic.Uint64
}

// Snapshot returns the current values.
func (c *Counters) Snapshot() Stats {
	return Stats{
		Errors:      c.Errors.Load(),
		Disconnects: c.Disconnects.Load(),
		Reconnects:  c.Reconnects.Load(),
		GapsFilled:  c.GapsFilled.Load(),
		GapsLost:    c.GapsLost.Load(),
		Connected:   c.Connected.Load(),
		Refreshes:   c.Refreshes.Load(),
		Failovers:   c.Failovers.Load(),
	}
}
