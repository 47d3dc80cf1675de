package redis

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// gapTracker remembers the last position delivered per subscribed stream:
// offsets are consecutive, so a jump reveals lost messages.
type gapTracker struct {
	mu   sync.Mutex
	last map[string]broker.Position
}

func (g *gapTracker) get(s string) (broker.Position, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p, ok := g.last[s]
	return p, ok
}

func (g *gapTracker) set(s string, p broker.Position) {
	g.mu.Lock()
	g.last[s] = p
	g.mu.Unlock()
}

func (g *gapTracker) forget(s string) {
	g.mu.Lock()
	delete(g.last, s)
	g.mu.Unlock()
}

// idleCheck is how long the subscriber connection may stay silent before a
// PING proves it alive (a half-open TCP connection never errors by itself).
const idleCheck = 15 * time.Second

// receive is the one goroutine reading the subscriber connection and
// calling the Handler (serialized, in order per stream). go-redis redials
// and resubscribes on the next read after an error; this loop paces those
// attempts with back-off and reports the state changes.
func (b *Broker) receive() {
	defer b.wg.Done()
	connected, everConnected := false, false
	wait := b.cfg.ReconnectWait
	pinged := false
	for b.ctx.Err() == nil {
		if !connected {
			// Ping dials (and resubscribes) at once instead of waiting for a
			// message that cannot come.
			ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timeout)
			err := b.ps.Ping(ctx)
			cancel()
			if err != nil {
				if b.ctx.Err() != nil {
					return
				}
				b.log.Debug("redis subscriber still unreachable", zap.Duration("retry_in", wait), zap.Error(err))
				if b.slots != nil {
					b.slots.connError()
				}
				select {
				case <-b.ctx.Done():
					return
				case <-time.After(jitter(wait)):
				}
				wait = min(2*wait, b.maxReconnectWait())
				continue
			}
			connected, wait = true, b.cfg.ReconnectWait
			b.stats.Connected.Store(1)
			if everConnected {
				b.stats.Reconnects.Add(1)
				b.log.Info("reconnected to redis; subscriptions restored")
				b.catchUp()
			}
			everConnected = true
		}
		msg, err := b.ps.ReceiveTimeout(b.ctx, idleCheck)
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = true
				ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timeout)
				err = b.ps.Ping(ctx)
				cancel()
				if err == nil {
					continue // the Pong arrives through Receive
				}
			}
			connected, pinged = false, false
			if b.slots != nil {
				b.slots.connError()
			}
			b.stats.Connected.Store(0)
			b.stats.Disconnects.Add(1)
			b.stats.Errors.Add(1)
			b.log.Error("lost the redis subscriber connection: publishes fail with 503 until it is back; reconnecting", zap.Error(err))
			continue
		}
		pinged = false
		if m, ok := msg.(*goredis.Message); ok {
			b.handleWire(m)
		}
	}
}

// maxReconnectWait bounds the back-off. On a cluster, the subscriber's node
// may be a master that just died while its replica takes over in seconds:
// retrying at most every second (a cheap dial per node) resubscribes right
// after the slot map has changed.
func (b *Broker) maxReconnectWait() time.Duration {
	if b.slots != nil {
		return max(b.cfg.ReconnectWait, time.Second)
	}
	return 30 * time.Second
}

func jitter(d time.Duration) time.Duration {
	return d*3/4 + time.Duration(time.Now().UnixNano()%int64(d/2+1))
}

func (b *Broker) handleWire(m *goredis.Message) {
	tok, ok := strings.CutPrefix(m.Channel, b.cfg.Prefix+"c:")
	if !ok {
		return
	}
	stream, err := broker.DecodeName(tok)
	if err != nil {
		b.log.Warn("message on a channel this broker did not make", zap.String("channel", m.Channel))
		return
	}
	node, epoch, off, data, ok := parseWire(m.Payload)
	if !ok {
		b.log.Warn("malformed message on a broker channel", zap.String("channel", m.Channel))
		return
	}
	if b.hist.Size <= 0 || epoch == "" {
		b.deliver(node, broker.Message{Stream: stream, Data: data})
		return
	}
	pos := broker.Position{Offset: off, Epoch: epoch}
	if last, known := b.gaps.get(stream); known && last.Epoch == epoch {
		if off <= last.Offset {
			return // already delivered by a gap fill
		}
		if off > last.Offset+1 {
			b.fillGap(stream, last, off)
		}
	}
	b.gaps.set(stream, pos)
	b.deliver(node, broker.Message{Stream: stream, Position: pos, Data: data})
}

// deliver hands m to the Handler unless this node published it: the hub
// delivered that locally, except when the publish outcome was unknown.
func (b *Broker) deliver(node string, m broker.Message) {
	if node != b.node || b.echoes.Arrived(m) {
		b.handler(m)
	}
}

// fillGap delivers the stored messages of stream after last and before off.
func (b *Broker) fillGap(stream string, last broker.Position, off uint64) {
	ctx, cancel := context.WithTimeout(b.ctx, 2*b.cfg.Timeout)
	defer cancel()
	got, _, err := b.since(ctx, stream, last, 0)
	if err != nil {
		b.stats.GapsLost.Add(1)
		b.log.Warn("messages lost between nodes: the gap could not be filled from history",
			zap.String("stream", stream), zap.Uint64("after", last.Offset), zap.Uint64("before", off), zap.Error(err))
		return
	}
	n := 0
	for _, s := range got {
		if s.Position.Offset >= off {
			break
		}
		n++
		b.deliver(s.node, s.Message)
	}
	b.stats.GapsFilled.Add(1)
	b.log.Info("filled a gap in live delivery from history", zap.String("stream", stream), zap.Int("messages", n))
}

// catchUp delivers, after a reconnect, what was published to the streams
// this node had received while its subscriber connection was down: without
// it a stream that gets no further message would never reveal its gap. One
// history read per stream with a known position.
func (b *Broker) catchUp() {
	if b.hist.Size <= 0 {
		return
	}
	b.gaps.mu.Lock()
	known := make(map[string]broker.Position, len(b.gaps.last))
	for s, p := range b.gaps.last {
		known[s] = p
	}
	b.gaps.mu.Unlock()
	filled := 0
	for stream, last := range known {
		if b.ctx.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(b.ctx, 2*b.cfg.Timeout)
		got, _, err := b.since(ctx, stream, last, 0)
		cancel()
		if err != nil {
			b.stats.GapsLost.Add(1)
			b.log.Warn("messages published while disconnected could not be read from history",
				zap.String("stream", stream), zap.Uint64("after", last.Offset), zap.Error(err))
			continue
		}
		if len(got) == 0 {
			continue
		}
		for _, s := range got {
			if s.node != b.node {
				b.handler(s.Message)
			}
		}
		b.gaps.set(stream, got[len(got)-1].Position)
		b.stats.GapsFilled.Add(1)
		filled += len(got)
	}
	if filled > 0 {
		b.log.Info("delivered messages published while disconnected, from history", zap.Int("messages", filled))
	}
}
