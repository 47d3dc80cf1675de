package push

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
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
	c.pending = nil
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
// read, then releases live frames.
func (h *Hub) recover(c *Conn, req map[string]Position) {
	if len(req) == 0 {
		return
	}
	last := make(map[string]uint64, len(req))
	for stream, pos := range req {
		if !h.mayRead(c, stream) {
			c.send("error", errorFrame("forbidden", "stream not readable: "+stream))
			continue
		}
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		msgs, cur, err := h.broker.Since(ctx, stream, pos)
		cancel()
		ok := err == nil
		if err != nil && !errors.Is(err, broker.ErrNotRecovered) {
			h.log.Warn("fetching history", zap.String("stream", stream), zap.Error(err))
		}
		if !ok {
			// Nothing is replayed, so every held-back live frame is new
			// to the client: none is skipped.
			c.sendAt("recovered", recoveredFrame(stream, false, cur), stream, cur)
			continue
		}
		if _, quiet := c.quiet[stream]; !quiet {
			c.send("recovered", recoveredFrame(stream, true, cur))
		}
		top := pos.Offset
		for _, m := range msgs {
			if c.isClosing() {
				// Dropped as a slow consumer while replaying: the rest
				// would only be discarded.
				break
			}
			var env envelope
			if json.Unmarshal(m.Data, &env) != nil {
				continue
			}
			if m.Position.Offset > top {
				top = m.Position.Offset
			}
			if h.matches(c, stream, &env) {
				c.sendReplay(&env, stream, m.Position)
			}
		}
		if cur.Offset > top {
			top = cur.Offset
		}
		last[stream] = top
	}
	c.endRecovery(last)
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
