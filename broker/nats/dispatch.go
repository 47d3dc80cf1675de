package nats

import (
	"context"
	"strconv"
	"strings"
	"sync"

	gonats "github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// gapTracker remembers, per subscribed stream, the sequence of the last
// message this node saw, so that a message whose predecessor (per
// Nats-Last-Sequence) is newer reveals a gap.
type gapTracker struct {
	mu   sync.Mutex
	last map[string]uint64
}

func (g *gapTracker) get(stream string) (uint64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.last[stream]
	return v, ok
}

func (g *gapTracker) set(stream string, seq uint64) {
	g.mu.Lock()
	g.last[stream] = seq
	g.mu.Unlock()
}

func (g *gapTracker) forget(stream string) {
	g.mu.Lock()
	delete(g.last, stream)
	g.mu.Unlock()
}

func (g *gapTracker) reset() {
	g.mu.Lock()
	clear(g.last)
	g.mu.Unlock()
}

// dispatch is the one goroutine that calls the Handler, so calls are
// serialized and in order per stream.
func (b *Broker) dispatch() {
	defer close(b.done)
	prefix := b.cfg.Prefix + ".r."
	for {
		select {
		case <-b.ctx.Done():
			return
		case m := <-b.msgs:
			tok, ok := strings.CutPrefix(m.Subject, prefix)
			if !ok {
				continue
			}
			stream, err := broker.DecodeName(tok)
			if err != nil {
				b.log.Warn("message on a subject this broker did not make", zap.String("subject", m.Subject))
				continue
			}
			if b.hist.Size <= 0 {
				if m.Header.Get(hdrNode) != b.node {
					b.handler(broker.Message{Stream: stream, Data: m.Data})
				}
				continue
			}
			b.deliverSequenced(stream, m)
		}
	}
}

// deliverSequenced delivers a republished message, first filling from
// history any gap before it (messages lost while disconnected, or dropped
// as a slow consumer), and skipping what was already delivered.
func (b *Broker) deliverSequenced(stream string, m *gonats.Msg) {
	seq, err := strconv.ParseUint(m.Header.Get(hdrSeq), 10, 64)
	if err != nil {
		b.log.Warn("republished message without a sequence", zap.String("stream", stream))
		return
	}
	prev, _ := strconv.ParseUint(m.Header.Get(hdrLastSeq), 10, 64)
	last, known := b.gaps.get(stream)
	if known && seq <= last {
		if prev == 0 && seq < last {
			// Sequences restarted: the JetStream stream was recreated.
			ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timeout)
			_ = b.refreshEpoch(ctx)
			cancel()
		} else {
			return // already delivered by a gap fill
		}
	}
	if known && prev > last && seq > last {
		b.fillGap(stream, last, seq)
	}
	b.gaps.set(stream, seq)
	b.deliver(m.Header.Get(hdrNode), broker.Message{Stream: stream, Position: broker.Position{Offset: seq, Epoch: b.currentEpoch()}, Data: m.Data})
}

// deliver hands m to the Handler unless this node published it: the hub
// delivered that locally, except when the publish outcome was unknown.
func (b *Broker) deliver(node string, m broker.Message) {
	if node != b.node || b.echoes.Arrived(m) {
		b.handler(m)
	}
}

// fillGap delivers the stored messages of stream after last and before seq.
func (b *Broker) fillGap(stream string, last, seq uint64) {
	ctx, cancel := context.WithTimeout(b.ctx, 2*b.cfg.Timeout)
	defer cancel()
	got, _, err := b.since(ctx, stream, broker.Position{Offset: last, Epoch: b.currentEpoch()}, 0)
	if err != nil {
		b.stats.GapsLost.Add(1)
		b.log.Warn("messages lost between nodes: the gap could not be filled from history",
			zap.String("stream", stream), zap.Uint64("after", last), zap.Uint64("before", seq), zap.Error(err))
		return
	}
	n := 0
	for _, s := range got {
		if s.Position.Offset >= seq {
			break
		}
		n++
		b.deliver(s.node, s.Message)
	}
	b.stats.GapsFilled.Add(1)
	b.log.Info("filled a gap in live delivery from history", zap.String("stream", stream), zap.Int("messages", n))
}
