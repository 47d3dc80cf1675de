// Package memory is the default broker: one node, no other process. It
// keeps each stream's bounded history in the node's memory, so a client that
// reconnects to the same node can recover what it missed. There are no other
// nodes, so nothing ever arrives through the Handler.
//
// Epochs: each stream's history has an epoch made of a random string chosen
// when the broker is created plus a per-stream incarnation number. A restart
// of the node, or a stream whose history expired entirely and was dropped to
// bound memory, therefore starts a new epoch, and a client position from
// before is answered with an explicit broker.ErrNotRecovered instead of a
// silent gap.
package memory

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// Broker is the in-memory broker. Create it with New.
type Broker struct {
	hist   broker.History
	logger *zap.Logger
	epoch  string // random, made by New
	now    func() time.Time

	mu          sync.Mutex
	streams     map[string]*stream
	incarnation uint64
	closed      bool
	started     bool
	stop        chan struct{}
	done        chan struct{}
}

// stream is one stream's history: a ring of at most hist.Size entries.
type stream struct {
	epoch   string
	last    uint64    // offset of the newest message ever appended
	touched time.Time // last publish or position request, for dropping idle streams
	ring    ring
}

// New returns an unstarted memory broker keeping history as h bounds it
// (h.Size == 0 turns history off). A nil logger logs nothing.
func New(h broker.History, logger *zap.Logger) *Broker {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Broker{
		hist:    h,
		logger:  logger,
		epoch:   randomEpoch(),
		now:     time.Now,
		streams: make(map[string]*stream),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

func randomEpoch() string {
	var b [9]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; a clock-based
		// epoch still differs across restarts.
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Start starts the janitor that expires history by TTL. h is never called:
// there are no other nodes.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("starting memory broker: %w", broker.ErrUnavailable)
	}
	if b.started {
		return nil
	}
	b.started = true
	if b.hist.Size > 0 && b.hist.TTL > 0 {
		go b.janitor(sweepInterval(b.hist.TTL))
	} else {
		close(b.done)
	}
	return nil
}

// sweepInterval is how often expired history is removed between publishes:
// often enough that memory follows the TTL, rarely enough to cost nothing.
func sweepInterval(ttl time.Duration) time.Duration {
	iv := ttl / 4
	if iv < 100*time.Millisecond {
		iv = 100 * time.Millisecond
	}
	if iv > time.Minute {
		iv = time.Minute
	}
	return iv
}

func (b *Broker) janitor(every time.Duration) {
	defer close(b.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.sweep()
		}
	}
}

// sweep drops expired messages everywhere, and the state of streams that
// have had nothing kept and no activity for a whole TTL, so memory stays
// bounded by the streams that are live.
func (b *Broker) sweep() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	cutoff := now.Add(-b.hist.TTL)
	for name, s := range b.streams {
		s.ring.expire(cutoff)
		if s.ring.len() == 0 && s.touched.Before(cutoff) {
			delete(b.streams, name)
		}
	}
}

// Publish stores data in the stream's history and returns its position. It
// never delivers anything: the hub delivers locally.
func (b *Broker) Publish(ctx context.Context, name string, data []byte) (broker.Position, error) {
	if b.hist.Size <= 0 {
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		if closed {
			return broker.Position{}, fmt.Errorf("publishing to %q: broker closed: %w", name, broker.ErrUnavailable)
		}
		return broker.Position{}, nil
	}
	// The caller hands data over (see broker.Broker.Publish): history keeps
	// a reference, so one payload published to many streams is held once.
	kept := data
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.Position{}, fmt.Errorf("publishing to %q: broker closed: %w", name, broker.ErrUnavailable)
	}
	now := b.now()
	s := b.streamLocked(name, now)
	s.touched = now
	if b.hist.TTL > 0 {
		s.ring.expire(now.Add(-b.hist.TTL))
	}
	s.last++
	s.ring.push(entry{offset: s.last, at: now, data: kept}, b.hist.Size)
	return broker.Position{Offset: s.last, Epoch: s.epoch}, nil
}

// streamLocked returns the stream's state, creating a new incarnation (with
// a new epoch) when there is none.
func (b *Broker) streamLocked(name string, now time.Time) *stream {
	s := b.streams[name]
	if s == nil {
		b.incarnation++
		s = &stream{
			epoch:   b.epoch + "-" + strconv.FormatUint(b.incarnation, 36),
			touched: now,
		}
		b.streams[name] = s
	}
	return s
}

// Subscribe does nothing: with one node every stream is local.
func (b *Broker) Subscribe(string) error { return nil }

// Unsubscribe does nothing: with one node every stream is local.
func (b *Broker) Unsubscribe(string) error { return nil }

// Since returns at most limit of the stream's messages after pos (all when
// limit <= 0) and its current position. Offsets in a ring are consecutive,
// so a page starts by index, not by a scan. It never creates state: a stream this broker holds nothing for answers
// the zero position, with nothing to recover for a client that has seen
// nothing (the zero position too) and ErrNotRecovered for any other, so a
// client asking about streams that are never published costs no memory.
func (b *Broker) Since(ctx context.Context, name string, pos broker.Position, limit int) ([]broker.Message, broker.Position, error) {
	if b.hist.Size <= 0 {
		return nil, broker.Position{}, fmt.Errorf("recovering %q: history is off: %w", name, broker.ErrNotRecovered)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, broker.Position{}, fmt.Errorf("recovering %q: broker closed: %w", name, broker.ErrUnavailable)
	}
	s := b.streams[name]
	if s == nil {
		if pos == (broker.Position{}) {
			return nil, broker.Position{}, nil
		}
		return nil, broker.Position{}, fmt.Errorf("recovering %q: no history kept: %w", name, broker.ErrNotRecovered)
	}
	now := b.now()
	s.touched = now
	if b.hist.TTL > 0 {
		s.ring.expire(now.Add(-b.hist.TTL))
	}
	cur := broker.Position{Offset: s.last, Epoch: s.epoch}
	// The zero position is "before the first message" in any epoch: it
	// recovers when the stream's first message is still kept.
	if pos.Epoch != s.epoch && pos != (broker.Position{}) {
		return nil, cur, fmt.Errorf("recovering %q: epoch %q is not the current %q: %w", name, pos.Epoch, s.epoch, broker.ErrNotRecovered)
	}
	if pos.Offset > s.last {
		return nil, cur, fmt.Errorf("recovering %q: offset %d is ahead of the stream (%d): %w", name, pos.Offset, s.last, broker.ErrNotRecovered)
	}
	oldest := s.last + 1 // with nothing kept, only the newest position is gap-free
	if s.ring.len() > 0 {
		oldest = s.ring.at(0).offset
	}
	if pos.Offset+1 < oldest {
		return nil, cur, fmt.Errorf("recovering %q: offset %d is older than the history (oldest kept %d): %w", name, pos.Offset, oldest, broker.ErrNotRecovered)
	}
	start := s.ring.len() - int(s.last-pos.Offset) // index of offset pos+1
	n := s.ring.len() - start
	if limit > 0 && n > limit {
		n = limit
	}
	if n <= 0 {
		return nil, cur, nil
	}
	out := make([]broker.Message, n)
	for i := range out {
		e := s.ring.at(start + i)
		out[i] = broker.Message{Stream: name, Position: broker.Position{Offset: e.offset, Epoch: s.epoch}, Data: e.data}
	}
	return out, cur, nil
}

// Close stops the janitor and drops all history. Publish and Since fail
// with ErrUnavailable afterwards.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.started
	b.streams = nil
	close(b.stop)
	b.mu.Unlock()
	if started {
		<-b.done
	}
	return nil
}

// Stats reports what the broker holds, for tests and metrics.
type Stats struct {
	Streams  int // streams with state (a publish created it)
	Messages int // messages kept across all streams
}

// Stats returns the current counts.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	var st Stats
	for _, s := range b.streams {
		st.Streams++
		st.Messages += s.ring.len()
	}
	return st
}

var _ broker.Broker = (*Broker)(nil)
