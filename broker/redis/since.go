package redis

import (
	"context"
	"fmt"
	"strconv"

	"github.com/caddyws/caddyws/broker"
)

// stored is a message read back from history.
type stored struct {
	broker.Message
	node string
}

// Since implements broker.Broker. Offsets are consecutive, so the missed
// messages are exactly offsets pos+1 to last; a page succeeds only if all of
// its offsets are still kept.
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
	client, closed := b.client, b.closed
	b.mu.Unlock()
	if client == nil || closed {
		return nil, broker.Position{}, fmt.Errorf("recovering %q: redis broker not running: %w", stream, broker.ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*b.cfg.Timeout)
	defer cancel()
	res, err := sinceScript.Run(ctx, client, b.keys(stream),
		pos.Offset, b.hist.TTL.Milliseconds(), b.hist.Size, limit).Slice()
	if err != nil {
		b.stats.Errors.Add(1)
		return nil, broker.Position{}, fmt.Errorf("recovering %q: %w: %w", stream, broker.ErrUnavailable, err)
	}
	if len(res) != 3 {
		return nil, broker.Position{}, fmt.Errorf("recovering %q: unexpected script reply %v", stream, res)
	}
	epoch, _ := res[0].(string)
	last, _ := res[1].(int64)
	cur := broker.Position{Offset: uint64(last), Epoch: epoch}
	zero := pos == (broker.Position{})
	switch {
	case epoch == "" && zero: // nothing was ever kept: nothing missed
		return nil, broker.Position{}, nil
	case epoch == "":
		return nil, broker.Position{}, fmt.Errorf("recovering %q: no history kept: %w", stream, broker.ErrNotRecovered)
	case pos.Epoch != epoch && !zero: // zero is before the first message of any epoch
		return nil, cur, fmt.Errorf("recovering %q: epoch %q is not the current %q: %w", stream, pos.Epoch, epoch, broker.ErrNotRecovered)
	case pos.Offset > cur.Offset:
		return nil, cur, fmt.Errorf("recovering %q: offset %d is ahead of the stream (%d): %w", stream, pos.Offset, cur.Offset, broker.ErrNotRecovered)
	case pos.Offset == cur.Offset:
		return nil, cur, nil
	}
	entries, _ := res[2].([]interface{})
	need := int(cur.Offset - pos.Offset)
	if limit > 0 && need > limit {
		need = limit
	}
	if len(entries) != need {
		return nil, cur, fmt.Errorf("recovering %q: offset %d is older than the history (%d of %d missed messages kept): %w",
			stream, pos.Offset, len(entries), need, broker.ErrNotRecovered)
	}
	out := make([]stored, need)
	for i, e := range entries { // oldest first
		s, err := parseEntry(e)
		if err != nil {
			return nil, cur, fmt.Errorf("recovering %q: %w", stream, err)
		}
		want := pos.Offset + 1 + uint64(i)
		if s.off != want {
			return nil, cur, fmt.Errorf("recovering %q: history has offset %d where %d belongs: %w", stream, s.off, want, broker.ErrNotRecovered)
		}
		out[i] = stored{
			Message: broker.Message{Stream: stream, Position: broker.Position{Offset: s.off, Epoch: epoch}, Data: []byte(s.data)},
			node:    s.node,
		}
	}
	return out, cur, nil
}

type entry struct {
	off        uint64
	node, data string
}

// parseEntry reads one XRANGE entry: [id, [field, value, ...]].
func parseEntry(e interface{}) (entry, error) {
	var out entry
	pair, ok := e.([]interface{})
	if !ok || len(pair) != 2 {
		return out, fmt.Errorf("malformed history entry %v", e)
	}
	fields, ok := pair[1].([]interface{})
	if !ok {
		return out, fmt.Errorf("malformed history entry %v", e)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		v, _ := fields[i+1].(string)
		switch k {
		case "o":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return out, fmt.Errorf("malformed offset %q in history", v)
			}
			out.off = n
		case "n":
			out.node = v
		case "d":
			out.data = v
		}
	}
	return out, nil
}
