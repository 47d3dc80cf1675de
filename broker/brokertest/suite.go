package brokertest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyws/caddyws/broker"
)

// Names are stream names that must be safe in any subject or key syntax.
var Names = []string{
	"user:alice", "event:news", "all", "",
	"with space", "a.b.c", "a", "a.b", "*", ">", "a.*", "a.>", "x y\tz\n",
	"ünïcødé ✓ 日本", "user:{tag}", "colon:semi;comma,", strings.Repeat("long", 200),
}

// Run runs the whole suite against b.
func Run(t *testing.T, b Backend) {
	t.Run("PositionsAndSince", func(t *testing.T) { testPositionsAndSince(t, b) })
	t.Run("ConcurrentPublishers", func(t *testing.T) { testConcurrentPublishers(t, b) })
	t.Run("OutsideWindow", func(t *testing.T) { testOutsideWindow(t, b) })
	t.Run("TTL", func(t *testing.T) { testTTL(t, b) })
	t.Run("HistoryOff", func(t *testing.T) { testHistoryOff(t, b) })
	t.Run("EpochMismatch", func(t *testing.T) { testEpochMismatch(t, b) })
	t.Run("LostHistoryIsNewEpoch", func(t *testing.T) { testLostHistory(t, b) })
	t.Run("StreamNames", func(t *testing.T) { testStreamNames(t, b) })
	t.Run("NoEcho", func(t *testing.T) { testNoEcho(t, b) })
	t.Run("ReadsCreateNoState", func(t *testing.T) { testReadsCreateNoState(t, b) })
	t.Run("Paging", func(t *testing.T) { testPaging(t, b) })
	t.Run("EvictedBetweenPages", func(t *testing.T) { testEvictedBetweenPages(t, b) })
	if !b.Shared {
		return
	}
	t.Run("FanOutByInterest", func(t *testing.T) { testFanOut(t, b) })
	t.Run("OrderPerStream", func(t *testing.T) { testOrder(t, b) })
	t.Run("LiveWithoutHistory", func(t *testing.T) { testLiveWithoutHistory(t, b) })
	if b.Stop != nil {
		t.Run("BrokerOutage", func(t *testing.T) { testOutage(t, b) })
	}
	if b.NewAt != nil {
		t.Run("GapFilledAfterNodeReconnect", func(t *testing.T) { testGapFill(t, b) })
	}
}

// uniq makes stream names unique per test, so tests sharing a backend
// (and reruns with -count) do not see each other's history.
func uniq(t *testing.T, s string) string {
	return fmt.Sprintf("%s/%d/%s", t.Name(), time.Now().UnixNano(), s)
}

func testPositionsAndSince(t *testing.T, b Backend) {
	a := b.NewNode(t, broker.History{Size: 100})
	s := uniq(t, "s")
	ps := publishN(t, a, s, "m", 10)
	increasing(t, ps)
	want := []string{"m-4", "m-5", "m-6", "m-7", "m-8", "m-9"}
	checkSince(t, a, s, ps[3], want, ps[4:])
	checkSince(t, a, s, ps[9], nil, nil)
	if b.Shared { // any node serves a reconnect
		other := b.NewNode(t, broker.History{Size: 100})
		checkSince(t, other, s, ps[3], want, ps[4:])
	}
}

func testConcurrentPublishers(t *testing.T, b Backend) {
	h := broker.History{Size: 1000}
	nodes := []*Node{b.NewNode(t, h)}
	if b.Shared {
		nodes = append(nodes, b.NewNode(t, h))
	}
	s := uniq(t, "s")
	const per = 50
	var mu sync.Mutex
	var all []broker.Position
	byOffset := map[uint64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			n := nodes[w%len(nodes)]
			for i := 0; i < per; i++ {
				data := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				p, err := n.Publish(ctx, s, []byte(data))
				cancel()
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				all = append(all, p)
				byOffset[p.Offset] = data
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent publish: %v", err)
	}
	if len(byOffset) != 4*per {
		t.Fatalf("%d distinct offsets for %d publishes: positions were reused", len(byOffset), 4*per)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Offset < all[j].Offset })
	increasing(t, all)
	var want []string
	for _, p := range all[1:] {
		want = append(want, byOffset[p.Offset])
	}
	checkSince(t, nodes[0], s, all[0], want, all[1:])
}

func testOutsideWindow(t *testing.T, b Backend) {
	a := b.NewNode(t, broker.History{Size: 5})
	s := uniq(t, "s")
	ps := publishN(t, a, s, "m", 20)
	wantNotRecovered(t, a, s, ps[2], "15 messages behind with Size 5")
	wantNotRecovered(t, a, s, ps[13], "6 messages behind with Size 5")
	checkSince(t, a, s, ps[14], []string{"m-15", "m-16", "m-17", "m-18", "m-19"}, ps[15:])
}

func testTTL(t *testing.T, b Backend) {
	const ttl = time.Second
	a := b.NewNode(t, broker.History{Size: 100, TTL: ttl})
	s := uniq(t, "s")
	ps := publishN(t, a, s, "old", 3)
	time.Sleep(ttl + 1500*time.Millisecond)
	fresh := publish(t, a, s, "fresh")
	wantNotRecovered(t, a, s, ps[0], "after its successors expired")
	checkSince(t, a, s, fresh, nil, nil)
	// ps[2] itself expired but nothing after it did: recovering is allowed
	// only with exactly the fresh message; "not recovered" is also honest.
	msgs, _, err := a.Since(ctxT(t, 10*time.Second), s, ps[2], 0)
	if err == nil && (len(msgs) != 1 || string(msgs[0].Data) != "fresh") {
		t.Fatalf("Since(last expired) = %s without error: want exactly the fresh message", dump(msgs))
	}
	if err != nil && !errors.Is(err, broker.ErrNotRecovered) {
		t.Fatalf("Since(last expired): %v", err)
	}
}

func testHistoryOff(t *testing.T, b Backend) {
	a := b.NewNode(t, broker.History{})
	s := uniq(t, "s")
	p := publish(t, a, s, "x")
	if p != (broker.Position{}) {
		t.Fatalf("Publish with history off returned %+v, want the zero position", p)
	}
	wantNotRecovered(t, a, s, broker.Position{Offset: 1, Epoch: "e"}, "with history off")
}

func testEpochMismatch(t *testing.T, b Backend) {
	a := b.NewNode(t, broker.History{Size: 10})
	s := uniq(t, "s")
	ps := publishN(t, a, s, "m", 3)
	cur := wantNotRecovered(t, a, s, broker.Position{Offset: ps[0].Offset, Epoch: ps[0].Epoch + "x"}, "with another epoch")
	if cur != ps[2] {
		t.Fatalf("current position after a refused recovery = %+v, want %+v", cur, ps[2])
	}
	wantNotRecovered(t, a, s, broker.Position{Offset: ps[2].Offset + 5, Epoch: ps[2].Epoch}, "with an offset ahead of the stream")
}

func testLostHistory(t *testing.T, b Backend) {
	h := broker.History{Size: 10}
	a := b.NewNode(t, h)
	s := uniq(t, "s")
	ps := publishN(t, a, s, "m", 3)
	if b.LoseHistory != nil {
		b.LoseHistory(t)
	} else {
		a = b.NewNode(t, h) // a restarted node
	}
	var after broker.Position
	deadline := time.Now().Add(15 * time.Second)
	for { // the broker may need to notice the loss and recreate its state
		p, err := a.Publish(ctxT(t, 5*time.Second), s, []byte("after"))
		if err == nil {
			after = p
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing after the history was lost: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if after.Epoch == ps[0].Epoch {
		t.Fatalf("epoch %q unchanged after the history was lost", after.Epoch)
	}
	wantNotRecovered(t, a, s, ps[1], "from before the history was lost")
	checkSince(t, a, s, after, nil, nil)
}

func testStreamNames(t *testing.T, b Backend) {
	h := broker.History{Size: 10}
	a := b.NewNode(t, h)
	var sub *Node
	if b.Shared {
		sub = b.NewNode(t, h)
	}
	prefix := uniq(t, "")
	for _, n := range Names {
		s := prefix + n
		if sub != nil {
			if err := sub.Subscribe(s); err != nil {
				t.Fatalf("subscribe %q: %v", s, err)
			}
		}
		ps := publishN(t, a, s, "n", 2)
		checkSince(t, a, s, ps[0], []string{"n-1"}, ps[1:])
	}
	if sub == nil {
		return
	}
	syncInterest(t, a, sub, prefix+Names[len(Names)-1])
	for i, n := range Names {
		publish(t, a, prefix+n, fmt.Sprintf("live-%d", i))
	}
	msgs, ok := sub.rec.waitFor(10*time.Second, func(m []broker.Message) bool {
		return hasData(m, prefix+Names[len(Names)-1], fmt.Sprintf("live-%d", len(Names)-1))
	})
	if !ok {
		t.Fatalf("live messages did not all arrive: %s", dump(msgs))
	}
	for i, n := range Names {
		got := 0
		for _, m := range msgs {
			if strings.HasPrefix(string(m.Data), "live-") {
				if m.Stream == prefix+n {
					got++
					if string(m.Data) != fmt.Sprintf("live-%d", i) {
						t.Errorf("stream %q got %q (names collide)", n, m.Data)
					}
				}
			}
		}
		if got != 1 {
			t.Errorf("stream %q received %d live messages, want 1", n, got)
		}
	}
}

func testNoEcho(t *testing.T, b Backend) {
	h := broker.History{Size: 10}
	a := b.NewNode(t, h)
	s := uniq(t, "s")
	if err := a.Subscribe(s); err != nil {
		t.Fatal(err)
	}
	if b.Shared {
		other := b.NewNode(t, h)
		if err := other.Subscribe(s); err != nil {
			t.Fatal(err)
		}
		syncInterest(t, a, other, s)
		publish(t, a, s, "mine")
		if _, ok := other.rec.waitFor(5*time.Second, func(m []broker.Message) bool { return hasData(m, s, "mine") }); !ok {
			t.Fatal("the other node never received the message")
		}
	} else {
		publish(t, a, s, "mine")
	}
	time.Sleep(300 * time.Millisecond)
	if got := a.Received(); len(got) != 0 {
		t.Fatalf("the publishing node received its own messages: %s", dump(got))
	}
}
