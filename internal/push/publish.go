package push

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
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
	// Duplicates counts the streams skipped because a message with this id
	// went to them within the dedupe window (a retry).
	Duplicates int `json:"duplicates,omitempty"`
}

// Publish delivers p to the matching connections of this node and hands it
// to the broker for the other nodes (and the history). It never waits on a
// subscriber. An error wrapping broker.ErrUnavailable means the broker did
// not take the message (for a list of users, the users before the failing
// one were published).
//
// A publish costs what its body costs: the envelope is encoded once and the
// same bytes go to every stream (the broker and its history keep them
// without copying); a frame is built only for a stream with a local
// recipient, and once for all streams when frames carry no position.
func (h *Hub) Publish(ctx context.Context, p PublishRequest) (PublishResult, error) {
	if h.ctx.Err() != nil {
		return PublishResult{}, ErrClosed
	}
	res := PublishResult{ID: p.ID}
	if res.ID == "" {
		res.ID = h.idPrefix + strconv.FormatUint(h.msgSeq.Add(1), 36)
	}
	env := envelope{ID: res.ID, Event: p.Event, Message: p.Message}
	if p.Broadcast {
		env.Event = ""
	}
	// The addressed user is the stream's name, not a field of the envelope,
	// so that the bytes are the same for every user of a userIds list.
	data, err := json.Marshal(&env)
	if err != nil {
		return res, fmt.Errorf("encoding message: %w", err)
	}
	var shared messageFrames
	pub := func(stream, user string) error {
		e := env
		e.User = user
		n, dup, err := h.publishStream(ctx, stream, data, &e, &shared)
		res.Delivered += n
		if dup {
			res.Duplicates++
		}
		return err
	}
	switch {
	case p.Broadcast:
		return res, pub(streamAll, "")
	case p.UserID != "":
		return res, pub(userStream(p.UserID), p.UserID)
	case len(p.UserIDs) > 0:
		seen := make(map[string]struct{}, len(p.UserIDs))
		for _, u := range p.UserIDs {
			if _, dup := seen[u]; dup {
				continue
			}
			seen[u] = struct{}{}
			if err := pub(userStream(u), u); err != nil {
				return res, err
			}
		}
		return res, nil
	default:
		return res, pub(eventStream(p.Event), "")
	}
}

// publishStream publishes data (env encoded, shared by every stream of one
// publish: the broker must not modify it) to stream and delivers env
// locally. shared carries a position-free frame across the streams. A
// message whose id already went to stream is skipped (dup).
//
// Publishes to one stream reach the broker concurrently; their local
// delivery follows the offsets the broker assigned (publishOrder), and the
// call returns once its message is delivered here.
//
// When the broker's outcome is unknown (ErrMaybeStored) nothing is
// delivered here: if the message was stored, the broker hands it back
// through fromBroker, once, like to every other node.
func (h *Hub) publishStream(ctx context.Context, stream string, data []byte, env *envelope, shared *messageFrames) (n int, dup bool, err error) {
	var p *pendingPublish
	seen := func() bool { return h.recent.seen(stream, env.ID) }
	for {
		var busy *pendingPublish
		var dup bool
		if p, busy, dup = h.order.begin(stream, env.ID, env, shared, seen); dup {
			return 0, true, nil
		}
		if p != nil {
			break
		}
		// The same id is being published to stream (a retry racing its
		// first attempt): its outcome decides.
		select {
		case <-busy.ready:
		case <-ctx.Done():
			return 0, false, fmt.Errorf("publishing to %s: %w", stream, ctx.Err())
		}
	}
	p.at = time.Now().UnixNano()
	pos, err := h.broker.Publish(ctx, stream, data)
	if err == nil {
		h.recent.add(stream, env.ID)
		h.metrics.Published.Inc()
	}
	h.order.finish(stream, p, err == nil, pos, h.opts.History.Size > 0, func(q *pendingPublish) int {
		return h.deliver(q.env, stream, q.pos, q.at, q.shared)
	})
	// Bounded by the broker calls this one overlapped. Not by ctx: the
	// delivery may use env and shared, which belong to this call.
	<-p.ready
	if err != nil {
		return 0, false, fmt.Errorf("publishing to %s: %w", stream, err)
	}
	return p.n, false, nil
}

// decodeEnvelope reads what a broker carried on stream. The user of a user
// stream is its name (older nodes also wrote it into the envelope).
func decodeEnvelope(stream string, data []byte) (envelope, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return env, err
	}
	if env.User == "" && strings.HasPrefix(stream, "user:") {
		env.User = strings.TrimPrefix(stream, "user:")
	}
	return env, nil
}

// fromBroker receives what other nodes published to streams this node
// subscribed to. It must not block: delivery only queues.
func (h *Hub) fromBroker(m broker.Message) {
	env, err := decodeEnvelope(m.Stream, m.Data)
	if err != nil {
		h.log.Warn("undecodable message from broker", zap.String("stream", m.Stream), zap.Error(err))
		return
	}
	if !h.recent.firstTime(m.Stream, env.ID) {
		return // a publisher's retry of a message this node has delivered
	}
	h.deliver(&env, m.Stream, m.Position, time.Now().UnixNano(), nil)
}

// deliver queues env to every local connection it addresses on stream. The
// frame of each transport is built on its first recipient (none: no cost);
// with shared, a frame without position fields is built once for every
// stream.
func (h *Hub) deliver(env *envelope, stream string, pos broker.Position, at int64, shared *messageFrames) int {
	withPos := h.opts.History.Size > 0
	var frames messageFrames
	var payload []byte
	build := func(k Transport) []byte {
		i := k.index()
		switch {
		case frames[i] != nil:
		case !withPos && shared != nil && shared[i] != nil:
			frames[i] = shared[i]
		default:
			if payload == nil {
				payload = messageFrame(env, stream, pos, withPos)
			}
			frames[i] = encodeMessage(k, payload, env.Event)
			if !withPos && shared != nil {
				shared[i] = frames[i]
			}
		}
		return frames[i]
	}
	var slow []*Conn
	// now are the connections this publish writes to itself, once the
	// hub lock is released (writeNow): idle ones, almost all of them.
	var nowBuf [maxNowBatch]*Conn
	now := nowBuf[:0]
	n := 0
	try := func(c *Conn) {
		ok, overflow, inline := c.enqueue(item{data: build(c.tr.kind()), stream: stream, offset: pos.Offset, epoch: pos.Epoch, at: at})
		switch {
		case inline:
			now = append(now, c)
			n++
		case ok:
			n++
		case overflow:
			slow = append(slow, c)
		}
	}
	h.mu.RLock()
	switch {
	case stream == streamAll:
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
	h.writeNow(now)
	clear(now)
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
	case strings.HasPrefix(stream, "user:"):
		user := env.User
		if user == "" {
			user = strings.TrimPrefix(stream, "user:")
		}
		return user == c.user && (env.Event == "" || c.hasEventLocked(env.Event))
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
	h.metrics.dropped("slow", c.tr.kind())
	if ce := h.log.Check(zap.DebugLevel, "closing slow subscriber"); ce != nil {
		ce.Write(zap.String("user", c.user))
	}
}
