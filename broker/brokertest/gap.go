package brokertest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyws/caddyws/broker"
)

// testGapFill: node B alone loses the broker while A keeps publishing; when
// B is back, the next live message reveals the gap and B delivers the
// missed messages from history first: nothing lost, nothing twice, in order.
func testGapFill(t *testing.T, b Backend) {
	h := broker.History{Size: 100}
	a := b.NewNode(t, h)
	px := NewProxy(t, b.Addr())
	rec := newRecorder()
	br := b.NewAt(t, px.Addr(), h, rec.handle)
	t.Cleanup(func() { _ = br.Close() })
	bn := &Node{Broker: br, rec: rec}
	s := uniq(t, "s")
	if err := bn.Subscribe(s); err != nil {
		t.Fatal(err)
	}
	syncInterest(t, a, bn, s)
	want := []string{"live-0"}
	publish(t, a, s, "live-0")
	if _, ok := bn.rec.waitFor(5*time.Second, func(m []broker.Message) bool { return hasData(m, s, "live-0") }); !ok {
		t.Fatal("live-0 not delivered")
	}
	px.Cut()
	time.Sleep(300 * time.Millisecond) // B notices; A is unaffected
	for i := 0; i < 5; i++ {
		want = append(want, fmt.Sprintf("missed-%d", i))
		publish(t, a, s, want[len(want)-1])
	}
	px.Resume()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		d := fmt.Sprintf("after-%d", i)
		want = append(want, d)
		publish(t, a, s, d)
		if _, ok := bn.rec.waitFor(300*time.Millisecond, func(m []broker.Message) bool { return hasData(m, s, d) }); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never got live messages again: %s", dump(bn.Received()))
		}
	}
	var got []string
	for _, m := range ofStream(bn.Received(), s) {
		if !strings.HasPrefix(string(m.Data), "probe-") {
			got = append(got, string(m.Data))
		}
	}
	// Messages published while B was reconnecting and not yet subscribed
	// are gaps too: B must have every one of them.
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("B received\n  %v\nwant\n  %v", got, want)
	}
	if st, ok := br.(broker.StatsReporter); ok {
		s := st.Stats()
		if s.GapsFilled == 0 || s.Disconnects == 0 || s.Reconnects == 0 {
			t.Fatalf("stats %+v: want the gap fill, the disconnect and the reconnect counted", s)
		}
	}
}
