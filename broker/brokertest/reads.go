package brokertest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyws/caddyws/broker"
)

// testReadsCreateNoState: asking for the history of streams nothing was
// published to (what any subscriber can do, with any event name) leaves no
// state behind, and the first publish afterwards still starts positions
// that recover correctly.
func testReadsCreateNoState(t *testing.T, b Backend) {
	if b.HasState == nil {
		t.Fatal("Backend.HasState is required: every broker must show that reads create no state")
	}
	h := broker.History{Size: 10}
	a := b.NewNode(t, h)
	nodes := []*Node{a}
	if b.Shared {
		nodes = append(nodes, b.NewNode(t, h))
	}
	long := strings.Repeat("e", 300)
	for i := 0; i < 20; i++ {
		s := uniq(t, fmt.Sprintf("%s-%d", long, i))
		for _, n := range nodes {
			if err := n.Subscribe(s); err != nil {
				t.Fatal(err)
			}
			msgs, cur, err := n.Since(ctxT(t, 10*time.Second), s, broker.Position{}, 0)
			if err != nil || len(msgs) != 0 || cur != (broker.Position{}) {
				t.Fatalf("Since(unknown stream, zero) = %d messages, %+v, %v: want nothing to recover at the zero position", len(msgs), cur, err)
			}
			if msgs, cur, err = n.Since(ctxT(t, 10*time.Second), s, broker.Position{}, 1); err != nil || len(msgs) != 0 || cur != (broker.Position{}) {
				t.Fatalf("Since(unknown stream, zero, page of 1) = %d messages, %+v, %v: want nothing to recover at the zero position", len(msgs), cur, err)
			}
			_, cur, err = n.Since(ctxT(t, 10*time.Second), s, broker.Position{Offset: 5, Epoch: "gone"}, 1)
			if !errors.Is(err, broker.ErrNotRecovered) || cur != (broker.Position{}) {
				t.Fatalf("Since(unknown stream, offset 5) = %+v, %v: want ErrNotRecovered at the zero position", cur, err)
			}
			if err := n.Unsubscribe(s); err != nil {
				t.Fatal(err)
			}
		}
		if b.HasState(t, a.Broker, s) {
			t.Fatalf("the broker holds state for %q after only reads", s)
		}
	}

	// The first publish after reads starts the stream as usual.
	s := uniq(t, "first")
	if _, _, err := a.Since(ctxT(t, 10*time.Second), s, broker.Position{}, 0); err != nil {
		t.Fatal(err)
	}
	ps := publishN(t, a, s, "m", 3)
	increasing(t, ps)
	if !b.HasState(t, a.Broker, s) {
		t.Fatalf("HasState(%q) is false after a publish: the hook cannot see state", s)
	}
	checkSince(t, a, s, ps[0], []string{"m-1", "m-2"}, ps[1:])
	checkSince(t, a, s, ps[2], nil, nil)
	// A client that saw nothing (the zero position it was handed) gets
	// every message, or an honest "not recovered": never a partial list.
	msgs, cur, err := a.Since(ctxT(t, 10*time.Second), s, broker.Position{}, 0)
	switch {
	case errors.Is(err, broker.ErrNotRecovered):
	case err != nil:
		t.Fatalf("Since(zero) after publishes: %v", err)
	case len(msgs) != 3 || string(msgs[0].Data) != "m-0" || msgs[0].Position != ps[0] || cur != ps[2]:
		t.Fatalf("Since(zero) after publishes = %s at %+v: want all three messages", dump(msgs), cur)
	}
}
