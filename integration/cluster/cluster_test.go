package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestClusterNATS(t *testing.T)  { testCluster(t, newNATS(t)) }
func TestClusterRedis(t *testing.T) { testCluster(t, newRedis(t)) }

func testCluster(t *testing.T, b brokerServer) {
	a := startNode(t, "node1.Caddyfile", b.kind(), b.url())
	bn := startNode(t, "node2.Caddyfile", b.kind(), b.url())
	t.Run("Addressing", func(t *testing.T) { testAddressing(t, a, bn) })
	t.Run("MoveNodeRecovers", func(t *testing.T) { testMove(t, a, bn) })
	t.Run("OutsideWindow", func(t *testing.T) { testOutsideWindow(t, a, bn) })
	t.Run("BrokerOutage", func(t *testing.T) { testOutage(t, b, a, bn) })
	t.Run("EpochChange", func(t *testing.T) { testEpochChange(t, b, a, bn) })
}

func msg(fields string, text string) string {
	return fmt.Sprintf(`{%s"message":%q}`, fields, text)
}

// testAddressing: subscribers on A receive what is published on B, for user,
// event and broadcast addressing, and only what addresses them.
func testAddressing(t *testing.T, a, b *node) {
	alice := dial(t, a, map[string]string{"token": "alice", "event": "news"})
	bob := dial(t, a, map[string]string{"token": "bob", "event": "sports"})
	probe(t, b, alice, func(i int) string { return msg(`"userId":"alice","event":"news",`, fmt.Sprint("pu", i)) }, func(i int) string { return fmt.Sprint("pu", i) })
	probe(t, b, alice, func(i int) string { return msg(`"event":"news",`, fmt.Sprint("pe", i)) }, func(i int) string { return fmt.Sprint("pe", i) })
	probe(t, b, bob, func(i int) string { return msg(`"broadcast":true,`, fmt.Sprint("pb", i)) }, func(i int) string { return fmt.Sprint("pb", i) })

	resp := mustPublish(t, b, msg(`"userId":"alice","event":"news",`, "to-alice"))
	var r struct {
		ID        string `json:"id"`
		Delivered *int   `json:"delivered"`
		Scope     string `json:"scope"`
	}
	if err := json.Unmarshal([]byte(resp), &r); err != nil || r.ID == "" || r.Delivered == nil || *r.Delivered != 0 || r.Scope != "node" {
		t.Fatalf("publish response on a node without the subscriber = %s, want an id, delivered 0 and scope node", resp)
	}
	mustPublish(t, b, msg(`"event":"news",`, "to-news"))
	mustPublish(t, b, msg(`"userId":"bob","event":"news",`, "bob-news")) // bob is not on news
	mustPublish(t, b, msg(`"broadcast":true,`, "to-all"))
	for _, want := range []string{"to-alice", "to-news", "to-all"} {
		if _, ok := alice.waitFor(10*time.Second, hasText(want)); !ok {
			t.Fatalf("alice on %s did not receive %q published on %s: %+v", a.name, want, b.name, alice.messages())
		}
	}
	if _, ok := bob.waitFor(10*time.Second, hasText("to-all")); !ok {
		t.Fatalf("bob did not receive the broadcast: %+v", bob.messages())
	}
	for _, m := range bob.messages() {
		if !strings.HasPrefix(m.text(), "pb") && m.text() != "to-all" {
			t.Fatalf("bob received %q, which does not address him", m.text())
		}
	}
	for _, m := range alice.messages() {
		if m.text() == "bob-news" {
			t.Fatal("alice received bob's message")
		}
	}
}

// connectFrame is the full first frame, with recovery positions.
func connectFrame(user string, recover map[string]frame) map[string]any {
	f := map[string]any{"type": "connect", "token": user, "events": []string{"news"}}
	if recover != nil {
		r := map[string]any{}
		for s, p := range recover {
			r[s] = map[string]any{"offset": p.Offset, "epoch": p.Epoch}
		}
		f["recover"] = r
	}
	return f
}

// testMove: a subscriber leaves A with its last position and reconnects to
// B, which recovers from the broker's history exactly what it missed.
func testMove(t *testing.T, a, b *node) {
	carol := dial(t, a, connectFrame("carol", nil))
	probe(t, b, carol, func(i int) string { return msg(`"userId":"carol",`, fmt.Sprint("probe", i)) }, func(i int) string { return fmt.Sprint("probe", i) })
	mustPublish(t, b, msg(`"userId":"carol",`, "m1"))
	last, ok := carol.waitFor(10*time.Second, hasText("m1"))
	if !ok || last.Stream != "user:carol" || last.Epoch == "" || last.Offset == 0 {
		t.Fatalf("m1 = %+v, want a position on stream user:carol", last)
	}
	_ = carol.conn.Close()
	for _, m := range []string{"m2", "m3", "m4"} {
		mustPublish(t, a, msg(`"userId":"carol",`, m))
	}
	moved := dial(t, b, connectFrame("carol", map[string]frame{"user:carol": last}))
	rec, ok := moved.waitFor(10*time.Second, func(f frame) bool { return f.Type == "recovered" })
	if !ok || !rec.Recovered || rec.Stream != "user:carol" {
		t.Fatalf("recovered frame = %+v (found %v), want recovered true for user:carol", rec, ok)
	}
	if _, ok := moved.waitFor(10*time.Second, hasText("m4")); !ok {
		t.Fatalf("missed messages not replayed on %s: %+v", b.name, moved.messages())
	}
	mustPublish(t, a, msg(`"userId":"carol",`, "m5")) // live again, from the other node
	if _, ok := moved.waitFor(10*time.Second, hasText("m5")); !ok {
		t.Fatalf("live message after recovery not delivered: %+v", moved.messages())
	}
	var got []string
	prev := last.Offset
	for _, m := range moved.messages() {
		got = append(got, m.text())
		if m.Offset <= prev {
			t.Fatalf("offset %d after %d: duplicated or out of order: %+v", m.Offset, prev, moved.messages())
		}
		prev = m.Offset
	}
	if strings.Join(got, ",") != "m2,m3,m4,m5" {
		t.Fatalf("after moving nodes carol got %v, want exactly m2,m3,m4,m5", got)
	}
}

// testOutsideWindow: more than history size (1000 in the example) missed
// messages: the client is told "not recovered", never a silent gap.
func testOutsideWindow(t *testing.T, a, b *node) {
	dave := dial(t, a, connectFrame("dave", nil))
	probe(t, b, dave, func(i int) string { return msg(`"userId":"dave",`, fmt.Sprint("probe", i)) }, func(i int) string { return fmt.Sprint("probe", i) })
	last := dave.messages()[len(dave.messages())-1]
	_ = dave.conn.Close()
	for i := 0; i < 1005; i++ {
		mustPublish(t, b, msg(`"userId":"dave",`, fmt.Sprint("flood", i)))
	}
	back := dial(t, a, connectFrame("dave", map[string]frame{"user:dave": last}))
	rec, ok := back.waitFor(10*time.Second, func(f frame) bool { return f.Type == "recovered" })
	if !ok || rec.Recovered {
		t.Fatalf("recovered frame = %+v (found %v), want recovered false after 1005 missed with history 1000", rec, ok)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(back.messages()); n != 0 {
		t.Fatalf("a not-recovered client got %d replayed messages", n)
	}
}

// testOutage kills the broker mid-stream: subscribers stay connected,
// publishes get 503 fast, and delivery resumes on its own after the restart.
func testOutage(t *testing.T, srv brokerServer, a, b *node) {
	erin := dial(t, a, connectFrame("erin", nil))
	probe(t, b, erin, func(i int) string { return msg(`"userId":"erin",`, fmt.Sprint("probe", i)) }, func(i int) string { return fmt.Sprint("probe", i) })

	srv.stop()
	for _, n := range []*node{b, a} {
		start := time.Now()
		code, body := publish(t, n, msg(`"userId":"erin",`, "while-down"))
		if took := time.Since(start); code != http.StatusServiceUnavailable || took > 5*time.Second {
			t.Fatalf("publish on %s with the broker down: %d %s after %v, want 503 within 5s", n.name, code, body, took)
		}
	}
	time.Sleep(time.Second)
	if _, closed := erin.snapshot(); closed != nil {
		t.Fatalf("subscriber disconnected during the broker outage: %v", closed)
	}
	srv.start(t)

	deadline := time.Now().Add(45 * time.Second)
	for i := 0; ; i++ {
		text := fmt.Sprint("after", i)
		code, _ := publish(t, b, msg(`"userId":"erin",`, text))
		if code == http.StatusOK {
			if _, ok := erin.waitFor(500*time.Millisecond, hasText(text)); ok {
				break
			}
		} else if code != http.StatusServiceUnavailable {
			t.Fatalf("publish after the restart: %d", code)
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery across nodes did not resume within 45s of the broker restart")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, closed := erin.snapshot(); closed != nil {
		t.Fatalf("subscriber disconnected: %v", closed)
	}
	for _, m := range erin.messages() {
		if m.text() == "while-down" {
			t.Fatal("a publish answered 503 was delivered")
		}
	}
}

// testEpochChange: the broker's history is lost (JetStream stream deleted,
// Redis flushed): a client coming back with an older position is told
// "not recovered" under the new epoch.
func testEpochChange(t *testing.T, srv brokerServer, a, b *node) {
	fay := dial(t, a, connectFrame("fay", nil))
	probe(t, b, fay, func(i int) string { return msg(`"userId":"fay",`, fmt.Sprint("probe", i)) }, func(i int) string { return fmt.Sprint("probe", i) })
	last := fay.messages()[len(fay.messages())-1]
	_ = fay.conn.Close()
	srv.loseHistory(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := publish(t, b, msg(`"userId":"fay",`, "new-epoch")); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("publishing never recovered after the history was lost")
		}
		time.Sleep(200 * time.Millisecond)
	}
	back := dial(t, a, connectFrame("fay", map[string]frame{"user:fay": last}))
	rec, ok := back.waitFor(10*time.Second, func(f frame) bool { return f.Type == "recovered" })
	if !ok || rec.Recovered || rec.Epoch == last.Epoch || rec.Epoch == "" {
		t.Fatalf("recovered frame = %+v (found %v), want recovered false with a new epoch (old %q)", rec, ok, last.Epoch)
	}
}
