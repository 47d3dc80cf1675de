package push

import (
	"maps"
	"slices"
	"strings"
)

// Recovery, per docs/push-protocol.md: the connection is subscribed live
// first with live frames held back, the history after each position is
// fetched and sent (after a "recovered" frame), then the held-back live
// frames follow, minus those the history already carried (by offset). So a
// message published during recovery is neither lost nor duplicated.

// startRecovery makes live frames wait in pending until endRecovery.
func (c *Conn) startRecovery(on bool) {
	if !on {
		return
	}
	c.mu.Lock()
	c.recovering = true
	c.mu.Unlock()
}

// endRecovery releases the pending live frames, skipping those at or below
// the last offset sent from history for their stream.
func (c *Conn) endRecovery(last map[string]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.recovering {
		return
	}
	c.recovering = false
	pending := c.pending
	// pushLocked counts what it queues: take the held-back frames out of
	// the budget first, so that none is counted twice or, if skipped, kept.
	c.queued -= c.pendingBytes
	c.pending, c.pendingBytes = nil, 0
	if c.closing {
		return
	}
	for _, it := range pending {
		if off, ok := last[it.stream]; ok && it.offset != 0 && it.offset <= off {
			continue
		}
		c.pushLocked(it)
	}
}

// recover replays history for each requested stream the connection may
// read, then releases live frames. It runs on the connection's reader, so a
// connection has one recovery in flight; it returns the close to send when
// a replay cannot be finished (see replay).
func (h *Hub) recover(c *Conn, req map[string]Position) *errClose {
	if len(req) == 0 {
		return nil
	}
	last := make(map[string]uint64, len(req))
	// In name order: the client sees its streams' recovered frames in the
	// same order on every connection and transport.
	for _, stream := range slices.Sorted(maps.Keys(req)) {
		pos := req[stream]
		if c.isClosing() {
			break // dropped or gone: the other streams would be discarded
		}
		if !h.mayRead(c, stream) {
			c.send("error", errorFrame("forbidden", "stream not readable: "+stream))
			continue
		}
		top, ok, ce := h.replay(c, stream, pos)
		if ce != nil {
			// Close before the held-back live frames are released
			// (after a gap they would be sent as if nothing was
			// missing), after what was replayed: the client's position
			// gets as far as it can.
			c.closeWith(ce.code, ce.reason, true)
			c.endRecovery(nil)
			return ce
		}
		if ok {
			last[stream] = top
		}
	}
	c.endRecovery(last)
	return nil
}

// mayRead reports whether c could have received messages of stream.
func (h *Hub) mayRead(c *Conn, stream string) bool {
	switch {
	case stream == streamAll:
		return true
	case strings.HasPrefix(stream, "user:"):
		return c.user != "" && stream == userStream(c.user)
	case strings.HasPrefix(stream, "event:"):
		h.mu.RLock()
		defer h.mu.RUnlock()
		return c.hasEventLocked(strings.TrimPrefix(stream, "event:"))
	}
	return false
}
