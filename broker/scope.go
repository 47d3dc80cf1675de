package broker

import (
	"context"
	"strings"
)

// Scope returns b seen through a namespace: every stream name it is given
// is prefixed with ns and a newline, and messages for other namespaces are
// dropped before h sees them. Hubs with different names on one broker
// server (same prefix) therefore never see each other's messages or
// history. A newline cannot occur in a hub name, so no namespace is a
// prefix of another's streams. Stats pass through when b reports them.
func Scope(b Broker, ns string) Broker {
	s := &scoped{b: b, ns: ns + "\n"}
	if r, ok := b.(StatsReporter); ok {
		return &scopedStats{scoped: s, r: r}
	}
	return s
}

type scoped struct {
	b  Broker
	ns string
}

type scopedStats struct {
	*scoped
	r StatsReporter
}

func (s *scopedStats) Stats() Stats { return s.r.Stats() }

func (s *scoped) Start(ctx context.Context, h Handler) error {
	return s.b.Start(ctx, func(m Message) {
		stream, ok := strings.CutPrefix(m.Stream, s.ns)
		if !ok {
			return
		}
		m.Stream = stream
		h(m)
	})
}

func (s *scoped) Publish(ctx context.Context, stream string, data []byte) (Position, error) {
	return s.b.Publish(ctx, s.ns+stream, data)
}

func (s *scoped) Subscribe(stream string) error   { return s.b.Subscribe(s.ns + stream) }
func (s *scoped) Unsubscribe(stream string) error { return s.b.Unsubscribe(s.ns + stream) }

func (s *scoped) Since(ctx context.Context, stream string, pos Position, limit int) ([]Message, Position, error) {
	msgs, p, err := s.b.Since(ctx, s.ns+stream, pos, limit)
	for i := range msgs {
		msgs[i].Stream = strings.TrimPrefix(msgs[i].Stream, s.ns)
	}
	return msgs, p, err
}

func (s *scoped) Close() error { return s.b.Close() }
