package memory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/brokertest"
)

func TestConformance(t *testing.T) {
	brokertest.Run(t, brokertest.Backend{
		New: func(t *testing.T, h broker.History, handler broker.Handler) broker.Broker {
			b := New(h, nil)
			if err := b.Start(context.Background(), handler); err != nil {
				t.Fatal(err)
			}
			return b
		},
		HasState: func(t *testing.T, b broker.Broker, stream string) bool {
			m := b.(*Broker)
			m.mu.Lock()
			defer m.mu.Unlock()
			_, ok := m.streams[stream]
			return ok
		},
	})
}

// TestIdleStreamsAreDropped: memory stays bounded by the live streams; a
// dropped stream comes back with a new epoch, never reusing offsets.
func TestIdleStreamsAreDropped(t *testing.T) {
	b := New(broker.History{Size: 10, TTL: 200 * time.Millisecond}, nil)
	if err := b.Start(context.Background(), func(broker.Message) {}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	var old broker.Position
	for i := 0; i < 100; i++ {
		p, err := b.Publish(ctx, "user:"+string(rune('a'+i%26))+string(rune('0'+i/26)), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		old = p
	}
	if st := b.Stats(); st.Streams != 100 || st.Messages != 100 {
		t.Fatalf("stats %+v, want 100 streams and messages", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Streams != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle streams never dropped: %+v", b.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p, err := b.Publish(ctx, "user:v3", []byte("y"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Epoch == old.Epoch {
		t.Fatalf("recreated stream reused epoch %q", p.Epoch)
	}
	if _, _, err := b.Since(ctx, "user:v3", old, 0); !errors.Is(err, broker.ErrNotRecovered) {
		t.Fatalf("Since(position of the dropped incarnation) = %v, want ErrNotRecovered", err)
	}
}

func TestSizeBoundsEachStream(t *testing.T) {
	b := New(broker.History{Size: 3}, nil)
	defer b.Close()
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		if _, err := b.Publish(ctx, "s", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Messages != 3 {
		t.Fatalf("kept %d messages, want 3", st.Messages)
	}
}

func TestClosedBrokerIsUnavailable(t *testing.T) {
	b := New(broker.History{Size: 3}, nil)
	_ = b.Start(context.Background(), nil)
	_ = b.Close()
	if _, err := b.Publish(context.Background(), "s", nil); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("publish after close: %v", err)
	}
}
