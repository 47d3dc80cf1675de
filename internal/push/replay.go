package push

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// History is replayed a page at a time, and each replayed frame waits for
// room in the connection's queue: what one recovery makes the server hold
// is one page read from the broker plus half the outbound budget, however
// long the history, and a client that reads gets all of it.
const (
	// firstReplayPage is the first page, before message sizes are known.
	firstReplayPage = 4
	// maxReplayPage bounds later pages; a page of large messages is cut
	// to about half of queue_bytes.
	maxReplayPage = 32
)

// replay sends the recovered frame and the history of stream after pos,
// page by page. It returns the highest offset the client now has (for
// deduplicating held-back live frames) and whether history was replayed.
// The recovered frame promises the whole gap, so a later page that cannot
// be read ends the connection instead of leaving a silent gap: 4029 when
// history was evicted past the replay (the client reads slower than the
// stream evicts; reconnecting, it is told "not recovered"), 1013 when the
// broker failed.
func (h *Hub) replay(c *Conn, stream string, pos Position) (uint64, bool, *errClose) {
	limit := firstReplayPage
	msgs, cur, err := h.page(stream, pos, limit)
	if err != nil {
		// Nothing is replayed, so every held-back live frame is new to
		// the client: none is skipped.
		c.sendAt("recovered", recoveredFrame(stream, false, cur), stream, cur)
		return 0, false, nil
	}
	if _, quiet := c.quiet[stream]; !quiet {
		c.send("recovered", recoveredFrame(stream, true, cur))
	}
	top := pos.Offset
	alive := h.opts.PingInterval + h.opts.PongTimeout
	for {
		biggest := 0
		for i := range msgs {
			m := msgs[i]
			msgs[i] = broker.Message{} // sent: let the page shrink
			if m.Position.Offset > top {
				top = m.Position.Offset
			}
			biggest = max(biggest, len(m.Data))
			var env envelope
			if json.Unmarshal(m.Data, &env) != nil || !h.matches(c, stream, &env) {
				continue
			}
			f := encodeMessage(c.tr.kind(), messageFrame(&env, stream, m.Position, true), env.Event)
			if !c.waitRoom(len(f)) {
				// Closing (dropped, gone, or the hub stops): the rest
				// would only be discarded.
				return top, true, nil
			}
			c.sendItem(item{data: f, stream: stream, offset: m.Position.Offset, epoch: m.Position.Epoch})
		}
		if top >= cur.Offset || len(msgs) < limit {
			break
		}
		// The client takes what is sent: it is alive although its
		// reader (this goroutine) is busy replaying.
		if c.nc != nil {
			_ = c.nc.SetReadDeadline(time.Now().Add(alive))
		}
		if biggest > 0 {
			limit = min(max(h.opts.QueueBytes/2/biggest, 1), maxReplayPage)
		}
		msgs, _, err = h.page(stream, Position{Offset: top, Epoch: cur.Epoch}, limit)
		switch {
		case errors.Is(err, broker.ErrNotRecovered):
			return top, true, &errClose{CloseSlow, "history evicted during the replay"}
		case err != nil:
			return top, true, &errClose{CloseTryAgainLater, reasonHistoryUnavailable}
		case len(msgs) == 0:
			return max(top, cur.Offset), true, nil
		}
	}
	return max(top, cur.Offset), true, nil
}

// page reads one page of history.
func (h *Hub) page(stream string, pos Position, limit int) ([]broker.Message, Position, error) {
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	msgs, cur, err := h.broker.Since(ctx, stream, pos, limit)
	if err != nil && !errors.Is(err, broker.ErrNotRecovered) {
		h.log.Warn("fetching history", zap.String("stream", stream), zap.Error(err))
	}
	return msgs, cur, err
}

// waitRoom blocks until a replayed frame of n bytes may be queued: the
// queue is empty, or it and the frame stay within half the outbound budget
// (held-back live frames do not count: they leave only after the replay,
// and the other half is theirs). The writer wakes it as the queue drains.
// It returns false when the connection closes or the hub stops first.
func (c *Conn) waitRoom(n int) bool {
	o := &c.hub.opts
	for {
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return false
		}
		if len(c.queue) == 0 || (2*(len(c.queue)+1) <= o.QueueSize && 2*(c.queued-c.pendingBytes+n) <= o.QueueBytes) {
			c.mu.Unlock()
			return true
		}
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.mu.Unlock()
		select {
		case <-room:
		case <-c.hub.ctx.Done():
			return false
		}
	}
}

// wakeLocked wakes a replay waiting in waitRoom.
func (c *Conn) wakeLocked() {
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}

// reasonHistoryUnavailable closes a connection whose replay the broker
// failed (1013, as an identity check that cannot be made).
const reasonHistoryUnavailable = "history unavailable"
