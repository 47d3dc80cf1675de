// Package brokertest is the conformance suite every broker.Broker passes:
// memory, nats and redis run the same tests, each against a real backend.
// Two brokers made by the same Backend are two nodes of one cluster.
package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/caddyws/caddyws/broker"
)

// Backend describes the broker under test.
type Backend struct {
	// New returns a started broker (one node) on the shared backend, with
	// history as h bounds it; its Handler is h's recorder (see Node). The
	// suite closes it.
	New func(t *testing.T, h broker.History, handler broker.Handler) broker.Broker
	// Shared is true when history and delivery cross nodes (nats, redis):
	// every broker New returns sees the same streams. False for memory,
	// where each broker is a node on its own.
	Shared bool
	// Stop and Start kill the backend server and start it again on the same
	// address with its data kept. Nil skips the outage test.
	Stop, Start func(t *testing.T)
	// LoseHistory wipes the backend's data, as a lost server would. Nil
	// (memory) simulates the loss with a new broker.
	LoseHistory func(t *testing.T)
	// Addr is the backend server's host:port, and NewAt makes a node that
	// reaches it at addr instead (through a Proxy). Both nil skip the test
	// of gaps filled after one node alone lost the server.
	Addr  func() string
	NewAt func(t *testing.T, addr string, h broker.History, handler broker.Handler) broker.Broker
	// HasState reports whether the backend holds anything for stream
	// (entries, keys, stored messages) through the broker b made by New.
	// Required: every broker is held to "reads never create state".
	HasState func(t *testing.T, b broker.Broker, stream string) bool
}

// Node is a broker plus what its Handler received.
type Node struct {
	broker.Broker
	rec *recorder
}

// NewNode starts a broker through b and records what it delivers.
func (b Backend) NewNode(t *testing.T, h broker.History) *Node {
	t.Helper()
	rec := newRecorder()
	br := b.New(t, h, rec.handle)
	t.Cleanup(func() { _ = br.Close() })
	return &Node{Broker: br, rec: rec}
}

// Received returns a copy of the messages delivered to this node so far.
func (n *Node) Received() []broker.Message { return n.rec.snapshot() }

// recorder collects delivered messages and wakes waiters.
type recorder struct {
	mu     sync.Mutex
	msgs   []broker.Message
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) handle(m broker.Message) {
	m.Data = bytes.Clone(m.Data)
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() []broker.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Message(nil), r.msgs...)
}

// waitFor polls until pred holds on the received messages or d passes.
func (r *recorder) waitFor(d time.Duration, pred func([]broker.Message) bool) ([]broker.Message, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		msgs := r.snapshot()
		if pred(msgs) {
			return msgs, true
		}
		select {
		case <-deadline.C:
			return r.snapshot(), false
		case <-r.notify:
		case <-tick.C:
		}
	}
}

// ofStream returns the messages of one stream.
func ofStream(msgs []broker.Message, stream string) []broker.Message {
	var out []broker.Message
	for _, m := range msgs {
		if m.Stream == stream {
			out = append(out, m)
		}
	}
	return out
}

func hasData(msgs []broker.Message, stream, data string) bool {
	for _, m := range msgs {
		if m.Stream == stream && string(m.Data) == data {
			return true
		}
	}
	return false
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// publish publishes and fails the test on error.
func publish(t *testing.T, n broker.Broker, stream, data string) broker.Position {
	t.Helper()
	pos, err := n.Publish(ctxT(t, 10*time.Second), stream, []byte(data))
	if err != nil {
		t.Fatalf("publish %q to %q: %v", data, stream, err)
	}
	return pos
}

// publishN publishes prefix-0 .. prefix-(n-1) and returns their positions.
func publishN(t *testing.T, b broker.Broker, stream, prefix string, n int) []broker.Position {
	t.Helper()
	ps := make([]broker.Position, n)
	for i := range ps {
		ps[i] = publish(t, b, stream, fmt.Sprintf("%s-%d", prefix, i))
	}
	return ps
}

// syncInterest waits until interest of sub in stream is in effect: pub publishes
// probes until one arrives. Subscribe/Unsubscribe calls are applied in
// order, so every earlier call is in effect too.
func syncInterest(t *testing.T, pub, sub *Node, stream string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		probe := fmt.Sprintf("probe-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := pub.Publish(ctx, stream, []byte(probe))
		cancel()
		if err == nil {
			if _, ok := sub.rec.waitFor(200*time.Millisecond, func(m []broker.Message) bool { return hasData(m, stream, probe) }); ok {
				return
			}
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Fatalf("interest in %q never took effect (no probe arrived in 15s)", stream)
}

// checkSince calls Since and checks it returns exactly want (data, in
// order, increasing positions of one epoch) after pos.
func checkSince(t *testing.T, b broker.Broker, stream string, pos broker.Position, want []string, wantPos []broker.Position) {
	t.Helper()
	msgs, cur, err := b.Since(ctxT(t, 10*time.Second), stream, pos, 0)
	if err != nil {
		t.Fatalf("Since(%q, %+v): %v", stream, pos, err)
	}
	if len(msgs) != len(want) {
		t.Fatalf("Since(%q, %+v) returned %d messages, want %d: %s", stream, pos, len(msgs), len(want), dump(msgs))
	}
	for i, m := range msgs {
		if string(m.Data) != want[i] || m.Stream != stream {
			t.Fatalf("Since message %d = %q on %q, want %q on %q", i, m.Data, m.Stream, want[i], stream)
		}
		if wantPos != nil && m.Position != wantPos[i] {
			t.Fatalf("Since message %d position %+v, want %+v (the one Publish returned)", i, m.Position, wantPos[i])
		}
	}
	if len(wantPos) > 0 && cur != wantPos[len(wantPos)-1] {
		t.Fatalf("Since current position %+v, want the last published %+v", cur, wantPos[len(wantPos)-1])
	}
}

func wantNotRecovered(t *testing.T, b broker.Broker, stream string, pos broker.Position, why string) broker.Position {
	t.Helper()
	msgs, cur, err := b.Since(ctxT(t, 10*time.Second), stream, pos, 0)
	if !errors.Is(err, broker.ErrNotRecovered) {
		t.Fatalf("Since(%q, %+v) %s: err = %v with %d messages, want ErrNotRecovered", stream, pos, why, err, len(msgs))
	}
	return cur
}

func dump(msgs []broker.Message) string {
	var b bytes.Buffer
	for _, m := range msgs {
		fmt.Fprintf(&b, "[%s %d/%s %q] ", m.Stream, m.Position.Offset, m.Position.Epoch, m.Data)
	}
	return b.String()
}

// increasing checks that positions grow strictly within one epoch.
func increasing(t *testing.T, ps []broker.Position) {
	t.Helper()
	for i, p := range ps {
		if p.Epoch == "" || p.Offset == 0 {
			t.Fatalf("position %d is %+v: want a non-empty epoch and a non-zero offset", i, p)
		}
		if i > 0 && (p.Epoch != ps[0].Epoch || p.Offset <= ps[i-1].Offset) {
			t.Fatalf("positions not increasing in one epoch: %+v after %+v", p, ps[i-1])
		}
	}
}
