package push

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// PublishResult is what a publisher learns.
type PublishResult struct {
	ID string `json:"id"`
	// Delivered counts the connections of this node the message was queued
	// to.
	Delivered int `json:"delivered"`
}

// Publish delivers p to the matching connections of this node and hands it
// to the broker for the other nodes (and the history). It never waits on a
// subscriber. An error wrapping broker.ErrUnavailable means the broker did
// not take the message (for a list of users, the users before the failing
// one were published).
func (h *Hub) Publish(ctx context.Context, p PublishRequest) (PublishResult, error) {
	if h.ctx.Err() != nil {
		return PublishResult{}, ErrClosed
	}
	res := PublishResult{ID: h.idPrefix + strconv.FormatUint(h.msgSeq.Add(1), 36)}
	env := envelope{ID: res.ID, Event: p.Event, Message: p.Message}
	switch {
	case p.Broadcast:
		env.Event = ""
		n, err := h.publishStream(ctx, streamAll, &env)
		res.Delivered += n
		return res, err
	case p.UserID != "":
		env.User = p.UserID
		n, err := h.publishStream(ctx, userStream(p.UserID), &env)
		res.Delivered += n
		return res, err
	case len(p.UserIDs) > 0:
		seen := make(map[string]struct{}, len(p.UserIDs))
		for _, u := range p.UserIDs {
			if _, dup := seen[u]; dup {
				continue
			}
			seen[u] = struct{}{}
			env.User = u
			n, err := h.publishStream(ctx, userStream(u), &env)
			res.Delivered += n
			if err != nil {
				return res, err
			}
		}
		return res, nil
	default:
		n, err := h.publishStream(ctx, eventStream(p.Event), &env)
		res.Delivered += n
		return res, err
	}
}

func (h *Hub) streamLock(stream string) func() {
	f := fnv.New32a()
	_, _ = f.Write([]byte(stream))
	l := &h.streamLocks[f.Sum32()%uint32(len(h.streamLocks))]
	l.Lock()
	return l.Unlock
}

func (h *Hub) publishStream(ctx context.Context, stream string, env *envelope) (int, error) {
	data, err := json.Marshal(env)
	if err != nil {
		return 0, fmt.Errorf("encoding message: %w", err)
	}
	unlock := h.streamLock(stream)
	defer unlock()
	at := time.Now().UnixNano()
	pos, err := h.broker.Publish(ctx, stream, data)
	if err != nil {
		return 0, fmt.Errorf("publishing to %s: %w", stream, err)
	}
	h.metrics.Published.Inc()
	frame := textFrame(messageFrame(env, stream, pos, h.opts.History.Size > 0))
	return h.deliver(env, item{data: frame, stream: stream, offset: pos.Offset, at: at}), nil
}

// fromBroker receives what other nodes published to streams this node
// subscribed to. It must not block: delivery only queues.
func (h *Hub) fromBroker(m broker.Message) {
	var env envelope
	if err := json.Unmarshal(m.Data, &env); err != nil {
		h.log.Warn("undecodable message from broker", zap.String("stream", m.Stream), zap.Error(err))
		return
	}
	frame := textFrame(messageFrame(&env, m.Stream, m.Position, h.opts.History.Size > 0))
	h.deliver(&env, item{data: frame, stream: m.Stream, offset: m.Position.Offset, at: time.Now().UnixNano()})
}

// deliver queues it to every local connection env addresses on it.stream.
func (h *Hub) deliver(env *envelope, it item) int {
	var slow []*Conn
	n := 0
	try := func(c *Conn) {
		ok, overflow := c.enqueue(it)
		if ok {
			n++
		} else if overflow {
			slow = append(slow, c)
		}
	}
	h.mu.RLock()
	switch {
	case it.stream == streamAll:
		for c := range h.all {
			try(c)
		}
	case env.User != "":
		for c := range h.users[env.User] {
			if env.Event == "" || c.hasEventLocked(env.Event) {
				try(c)
			}
		}
	default:
		for c := range h.events[env.Event] {
			try(c)
		}
	}
	h.mu.RUnlock()
	if n > 0 {
		h.metrics.Delivered.Add(float64(n))
	}
	for _, c := range slow {
		h.dropSlow(c)
	}
	return n
}

// hasEventLocked reports whether c subscribed to e; hub.mu must be held.
func (c *Conn) hasEventLocked(e string) bool {
	_, ok := c.events[e]
	return ok
}

// matches reports whether a message of stream with env's addressing goes to
// c (used for history replay).
func (h *Hub) matches(c *Conn, stream string, env *envelope) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	switch {
	case stream == streamAll:
		return true
	case env.User != "":
		return env.User == c.user && (env.Event == "" || c.hasEventLocked(env.Event))
	default:
		return c.hasEventLocked(env.Event)
	}
}

// dropSlow closes a connection whose queue overflowed with 4029. What it
// has queued is dropped; the close frame follows the write in progress, so
// a client that reads again sees why it was closed.
func (h *Hub) dropSlow(c *Conn) {
	h.unregister(c)
	c.mu.Lock()
	already := c.closing
	c.mu.Unlock()
	if already {
		return
	}
	c.closeWith(CloseSlow, "slow consumer", false)
	h.metrics.dropped("slow")
	if ce := h.log.Check(zap.DebugLevel, "closing slow subscriber"); ce != nil {
		ce.Write(zap.String("user", c.user))
	}
}
