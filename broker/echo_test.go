package broker

import "testing"

// TestEchoesDeliverOwnMessageOnlyWhenOutcomeUnknown: a node's own message
// coming back through its subscription is delivered exactly once when the
// publish outcome was unknown, whether it came back before or after the
// publish gave up, and never when the publish succeeded or surely failed.
func TestEchoesDeliverOwnMessageOnlyWhenOutcomeUnknown(t *testing.T) {
	m := Message{Stream: "user:a", Data: []byte(`{"id":"x","message":1}`)}
	for _, tc := range []struct {
		name         string
		arriveBefore bool
		unknown      bool
		want         int
	}{
		{"acknowledged, copy came first", true, false, 0},
		{"acknowledged, copy came later", false, false, 0},
		{"reply lost, copy came first", true, true, 1},
		{"reply lost, copy came later", false, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Echoes
			got := 0
			p := e.Begin(m.Stream, m.Data)
			if tc.arriveBefore && e.Arrived(m) {
				got++
			}
			if held := p.End(tc.unknown); held != nil {
				got++
			}
			for i := 0; i < 2; i++ { // the copy, then a stray repeat
				if e.Arrived(m) {
					got++
				}
			}
			if got != tc.want {
				t.Fatalf("delivered %d times, want %d", got, tc.want)
			}
			if other := (Message{Stream: "user:b", Data: m.Data}); e.Arrived(other) {
				t.Fatal("a message of another stream was taken for the echo")
			}
		})
	}
}
