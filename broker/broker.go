// Package broker carries published push messages between Caddy nodes and
// keeps their history. The push hub knows only this interface; memory (the
// default, one node), nats and redis implement it.
package broker

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Position locates a message in its stream. Offsets increase within a
// stream; the epoch changes whenever the stream's history is lost, so a
// client position from another epoch cannot be recovered.
type Position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// Message is one published message as a broker carries it.
type Message struct {
	// Stream is the stream the message was published to, e.g. "user:alice",
	// "event:news" or "all" (any string; brokers encode it for their subject
	// or key syntax).
	Stream string
	// Position is set when history is on, zero otherwise.
	Position Position
	// Data is the push envelope, opaque to the broker.
	Data []byte
}

// Handler receives the messages that other nodes published to streams this
// node subscribed to, in publish order per stream. It must not block.
type Handler func(Message)

// History bounds what a broker keeps per stream for recovery. A zero Size
// turns history off.
type History struct {
	// Size is the most messages kept per stream.
	Size int
	// TTL is how long a message is kept; zero keeps it until Size evicts it.
	TTL time.Duration
}

// Broker is what the push hub needs from a transport between nodes.
type Broker interface {
	// Start connects and delivers, from then on, the messages of subscribed
	// streams published on other nodes to h. It returns once the broker is
	// usable or failed; later reconnects happen on their own.
	Start(ctx context.Context, h Handler) error

	// Publish appends data to the stream's history (when on) and sends it to
	// every other node subscribed to the stream. The publishing node does not
	// receive its own message through the Handler: the hub delivers locally.
	// It returns the message's position (zero without history) and an error
	// wrapping ErrUnavailable when the broker cannot take the message, or
	// ErrMaybeStored (which wraps ErrUnavailable) when the request went out
	// but its reply was lost: then, if the message was stored, the broker
	// delivers it to this node's Handler too, once, so that local
	// subscribers get it like every other node's.
	//
	// data is handed over: the caller does not modify it afterwards, and the
	// broker may keep it (history) without copying, so one payload published
	// to many streams is held once.
	Publish(ctx context.Context, stream string, data []byte) (Position, error)

	// Subscribe and Unsubscribe declare this node's interest in a stream, so
	// that a node receives only what its own connections can match. The hub
	// counts references and calls each once per transition. Both are safe to
	// call while the broker is disconnected: interest is restored on reconnect.
	Subscribe(stream string) error
	Unsubscribe(stream string) error

	// Since returns the messages of stream published after pos, oldest
	// first, at most limit of them (limit <= 0: all), and the stream's
	// current position. It returns an error wrapping ErrNotRecovered when it
	// cannot return every message after pos up to the limit (history off,
	// epoch changed, or pos older than the oldest kept message).
	//
	// Paging: a reader that got limit messages continues with the position
	// of the last one, until it has reached the current position of its
	// first call. A continuation is checked like any position: if history
	// was evicted past it between two pages, the next page fails with
	// ErrNotRecovered; a page never skips a message silently.
	//
	// Since never creates state: for a stream the broker holds nothing for
	// it returns the zero Position, with no error when pos is the zero
	// Position too (nothing to recover) and ErrNotRecovered otherwise. The
	// zero Position means "before the stream's first message" in any epoch:
	// it recovers every message when the first one is still kept.
	Since(ctx context.Context, stream string, pos Position, limit int) ([]Message, Position, error)

	// Close stops delivery and releases connections.
	Close() error
}

var (
	// ErrUnavailable is returned when the broker cannot be reached.
	ErrUnavailable = errors.New("broker unavailable")
	// ErrNotRecovered is returned by Since when a gap cannot be filled.
	ErrNotRecovered = errors.New("position not recoverable")
	// ErrMaybeStored is returned by Publish when the outcome is unknown: the
	// request reached the broker but no reply came back in time.
	ErrMaybeStored = fmt.Errorf("publish outcome unknown, the message may have been stored: %w", ErrUnavailable)
)
