package push

import "time"

// sweep is the hub's single keepalive timer: instead of a timer per
// connection, one ticker walks the connections in buckets so that each gets
// a ping every PingInterval, spread over the interval rather than in one
// burst. A peer that answers nothing is cut by its read deadline
// (PingInterval + PongTimeout after its last sign of life); an identity whose
// token expires is closed with 4001 on its next sweep.
func (h *Hub) sweep() {
	defer close(h.sweepDone)
	tick := time.Second
	if h.opts.PingInterval < 4*tick {
		tick = h.opts.PingInterval / 4
	}
	buckets := uint64(h.opts.PingInterval / tick)
	if buckets == 0 {
		buckets = 1
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var round uint64
	var batch []*Conn
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-t.C:
			b := round % buckets
			round++
			batch = batch[:0]
			h.liveMu.Lock()
			for c := range h.live {
				if c.id%buckets == b {
					batch = append(batch, c)
				}
			}
			h.liveMu.Unlock()
			for _, c := range batch {
				if c.expired(now) {
					h.unregister(c)
					c.closeWith(CloseUnauthorized, "token expired", false)
					h.metrics.dropped("unauthorized", c.tr.kind())
					continue
				}
				// Unauthenticated connections get no keepalive: their
				// auth_timeout is the only clock they have.
				if c.isRegistered() {
					c.sendPing()
				}
			}
			clear(batch)
			h.abortStuck(now)
		}
	}
}

// abortStuck cuts the SSE streams whose write through net/http has made no
// progress for the write timeout (they arm no deadline per write).
func (h *Hub) abortStuck(now time.Time) {
	var stuck []*sseTransport
	h.liveMu.Lock()
	for c := range h.live {
		if t, ok := c.tr.(*sseTransport); ok && t.stuck(now) {
			stuck = append(stuck, t)
		}
	}
	h.liveMu.Unlock()
	for _, t := range stuck {
		t.abort()
	}
}

// expired reports whether a registered connection's identity has expired.
// expires is written before the connection is registered (under hub.mu),
// so reading it under hub.mu once registered is ordered after the write.
func (c *Conn) expired(now time.Time) bool {
	c.hub.mu.RLock()
	defer c.hub.mu.RUnlock()
	return c.registered && !c.expires.IsZero() && now.After(c.expires)
}
