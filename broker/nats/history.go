package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// streamConfig is the JetStream stream holding history: per subject (one
// subject per push stream) Size+1 messages, so that a client Size messages
// behind still has its own last message kept, which proves nothing after it
// was evicted; MaxAge = TTL. Stored messages are republished to the live
// subjects with their sequence, in store order.
func (b *Broker) streamConfig() jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if b.cfg.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	sc := jetstream.StreamConfig{
		Name:              b.cfg.Stream,
		Description:       "caddyws websocket_push history",
		Subjects:          []string{b.cfg.Prefix + ".s.>"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: int64(b.hist.Size) + 1,
		MaxAge:            b.hist.TTL,
		Storage:           storage,
		Replicas:          b.cfg.Replicas,
		AllowDirect:       true,
		RePublish: &jetstream.RePublish{
			Source:      b.cfg.Prefix + ".s.>",
			Destination: b.cfg.Prefix + ".r.>",
		},
	}
	if b.hist.TTL > 0 && b.hist.TTL < 2*time.Minute {
		sc.Duplicates = b.hist.TTL // may not exceed MaxAge
	}
	return sc
}

// ensureStream creates the JetStream stream or brings its limits in line
// with this node's history config, and records its epoch.
func (b *Broker) ensureStream(ctx context.Context) error {
	b.mu.Lock()
	js := b.js
	b.mu.Unlock()
	if js == nil {
		return fmt.Errorf("creating jetstream stream %s: %w", b.cfg.Stream, broker.ErrUnavailable)
	}
	s, err := b.putStream(ctx, js)
	if err != nil {
		// A config this node cannot apply (e.g. other storage) is not fatal
		// as long as the stream exists: use it as it is.
		var serr error
		if s, serr = js.Stream(ctx, b.cfg.Stream); serr != nil {
			return fmt.Errorf("creating jetstream stream %s: %w", b.cfg.Stream, err)
		}
		b.log.Warn("jetstream history stream exists with other settings; using it as is", zap.Error(err))
	}
	if err := b.checkReplicas(s.CachedInfo()); err != nil {
		return err
	}
	b.setEpoch(s.CachedInfo())
	return nil
}

func (b *Broker) setEpoch(info *jetstream.StreamInfo) string {
	e := strconv.FormatInt(info.Created.UnixNano(), 36)
	if old := b.epoch.Swap(&e); *old != e && *old != "" {
		b.log.Warn("jetstream history stream was recreated: new epoch, older positions are not recoverable",
			zap.String("old_epoch", *old), zap.String("epoch", e))
		b.gaps.reset()
	}
	return e
}

func (b *Broker) refreshEpoch(ctx context.Context) error {
	b.mu.Lock()
	js := b.js
	b.mu.Unlock()
	if js == nil {
		return broker.ErrUnavailable
	}
	s, err := js.Stream(ctx, b.cfg.Stream)
	if err != nil {
		return err
	}
	b.setEpoch(s.CachedInfo())
	return nil
}

// stored is a message read back from history.
type stored struct {
	broker.Message
	node string
}

// Since implements broker.Broker. A page is read message by message (a
// direct get of the subject's next message), so limit bounds the reads too.
func (b *Broker) Since(ctx context.Context, stream string, pos broker.Position, limit int) ([]broker.Message, broker.Position, error) {
	got, cur, err := b.since(ctx, stream, pos, limit)
	if err != nil {
		return nil, cur, err
	}
	out := make([]broker.Message, len(got))
	for i := range got {
		out[i] = got[i].Message
	}
	return out, cur, nil
}

func (b *Broker) since(ctx context.Context, stream string, pos broker.Position, limit int) ([]stored, broker.Position, error) {
	if b.hist.Size <= 0 {
		return nil, broker.Position{}, fmt.Errorf("recovering %q: history is off: %w", stream, broker.ErrNotRecovered)
	}
	b.mu.Lock()
	js, closed := b.js, b.closed
	b.mu.Unlock()
	if js == nil || closed {
		return nil, broker.Position{}, fmt.Errorf("recovering %q: nats broker not running: %w", stream, broker.ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*b.cfg.Timeout)
	defer cancel()
	zero := pos == (broker.Position{})
	st, err := js.Stream(ctx, b.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// A read creates nothing: with no JetStream stream, nothing is kept
		// (the next publish creates it).
		if zero {
			return nil, broker.Position{}, nil
		}
		return nil, broker.Position{}, fmt.Errorf("recovering %q: no history kept: %w", stream, broker.ErrNotRecovered)
	}
	if err != nil {
		b.stats.Errors.Add(1)
		return nil, broker.Position{}, fmt.Errorf("recovering %q: reading jetstream stream: %w: %w", stream, broker.ErrUnavailable, err)
	}
	info := st.CachedInfo()
	epoch := b.setEpoch(info)
	subj := b.pubSubject(stream)

	cur := broker.Position{Offset: info.State.LastSeq, Epoch: epoch}
	last, err := st.GetLastMsgForSubject(ctx, subj)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Nothing kept for this subject: the zero position has nothing to
		// recover, any other cannot be proven complete.
		if zero {
			return nil, broker.Position{}, nil
		}
		return nil, broker.Position{}, fmt.Errorf("recovering %q: no history kept: %w", stream, broker.ErrNotRecovered)
	case err != nil:
		b.stats.Errors.Add(1)
		return nil, cur, fmt.Errorf("recovering %q: %w: %w", stream, broker.ErrUnavailable, err)
	}
	cur.Offset = last.Sequence
	if pos.Epoch != epoch {
		return nil, cur, fmt.Errorf("recovering %q: epoch %q is not the current %q: %w", stream, pos.Epoch, epoch, broker.ErrNotRecovered)
	}
	if pos.Offset == last.Sequence {
		return nil, cur, nil
	}
	if pos.Offset > last.Sequence || pos.Offset == 0 {
		return nil, cur, fmt.Errorf("recovering %q: position %d is not in this stream (last %d): %w", stream, pos.Offset, last.Sequence, broker.ErrNotRecovered)
	}
	// The client's own last message must still be kept: eviction is
	// oldest-first per subject, so then everything after it is kept too.
	first, err := st.GetMsg(ctx, pos.Offset, jetstream.WithGetMsgSubject(subj))
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		b.stats.Errors.Add(1)
		return nil, cur, fmt.Errorf("recovering %q: %w: %w", stream, broker.ErrUnavailable, err)
	}
	if err != nil || first.Sequence != pos.Offset {
		return nil, cur, fmt.Errorf("recovering %q: position %d is older than the history: %w", stream, pos.Offset, broker.ErrNotRecovered)
	}
	var out []stored
	for seq := pos.Offset + 1; seq <= last.Sequence && (limit <= 0 || len(out) < limit); {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			b.stats.Errors.Add(1)
			return nil, cur, fmt.Errorf("recovering %q: %w: %w", stream, broker.ErrUnavailable, err)
		}
		out = append(out, stored{
			Message: broker.Message{Stream: stream, Position: broker.Position{Offset: m.Sequence, Epoch: epoch}, Data: m.Data},
			node:    m.Header.Get(hdrNode),
		})
		seq = m.Sequence + 1
	}
	// If the client's message was evicted while we read (a burst of
	// publishes), what we read may skip evicted ones: never hand that out
	// as complete. A full page may end before the last message.
	again, err := st.GetMsg(ctx, pos.Offset, jetstream.WithGetMsgSubject(subj))
	full := limit > 0 && len(out) == limit
	if err != nil || again.Sequence != pos.Offset || len(out) == 0 || (!full && out[len(out)-1].Position.Offset != last.Sequence) {
		return nil, cur, fmt.Errorf("recovering %q: history moved while reading: %w", stream, broker.ErrNotRecovered)
	}
	return out, cur, nil
}
