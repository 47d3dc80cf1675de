package push

import (
	"context"
	"io"
	"testing"
	"time"
)

// BenchmarkPublishTo100 publishes to one user with 100 WebSocket
// connections on loopback, each drained by its client: the server's time
// and allocations per publish of 100 deliveries (the clients' reads share
// the machine; they read the socket raw, so allocations are the
// server's). "together": the writes of a publish in one io_uring batch
// where the system has it; "one call each": one write(2) per connection.
//
//	go test -run - -bench PublishTo100 -benchmem ./internal/push/
func BenchmarkPublishTo100(b *testing.B) {
	h, url := inlineWSHub(b, nil)
	for range 100 {
		c := tdial(b, url, `{"type":"connect","token":"u"}`)
		if f := tread(b, c); f.Type != "connected" {
			b.Fatalf("first frame %+v", f)
		}
		// The client drains the socket below the WebSocket: its reads
		// allocate nothing, so allocs/op are the server's.
		nc := c.NetConn()
		_ = nc.SetReadDeadline(time.Time{})
		go func() { _, _ = io.Copy(io.Discard, nc) }()
	}
	p, err := ParsePublishBody([]byte(`{"userId":"u","message":{"text":"a small push message of about a hundred bytes"}}`))
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []struct {
		name string
		off  bool
	}{{"together", false}, {"one call each", true}} {
		b.Run(path.name, func(b *testing.B) {
			ringWritesOff.Store(path.off)
			defer ringWritesOff.Store(false)
			b.ReportAllocs()
			for b.Loop() {
				if r, err := h.Publish(context.Background(), p); err != nil || r.Delivered != 100 {
					b.Fatalf("delivered %d: %v", r.Delivered, err)
				}
			}
		})
	}
}
