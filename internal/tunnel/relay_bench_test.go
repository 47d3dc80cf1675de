package tunnel

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// naiveServer is the straightforward relay the issue measured (one frame
// per read, one write per frame), kept here as the yardstick.
func naiveServer(t testing.TB, upstream string) string {
	up := websocket.Upgrader{ReadBufferSize: 32 << 10, WriteBufferSize: 32 << 10}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		c, err := net.Dial("tcp", upstream)
		if err != nil {
			return
		}
		defer c.Close()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if err != nil {
					ws.Close()
					return
				}
				if ws.WriteMessage(websocket.BinaryMessage, buf[:n]) != nil {
					return
				}
			}
		}()
		for {
			_, p, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if _, err := c.Write(p); err != nil {
				return
			}
		}
	}))
	t.Cleanup(s.Close)
	return "ws" + strings.TrimPrefix(s.URL, "http")
}

// benchEcho streams b.N messages of size through the tunnel to an echo
// upstream on conns connections, reading and verifying every echoed byte.
func benchEcho(b *testing.B, url string, size, conns int) {
	b.Helper()
	msg := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	d := websocket.Dialer{ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	clients := make([]*websocket.Conn, conns)
	for i := range clients {
		c, _, err := d.Dial(url, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	b.SetBytes(int64(size))
	cpu0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, c := range clients {
		n := b.N / conns
		if i == 0 {
			n += b.N % conns
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range n {
				if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			want := n * size
			got := 0
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
			buf := make([]byte, 256<<10)
			for got < want {
				_, r, err := c.NextReader()
				if err != nil {
					b.Error(err)
					return
				}
				for {
					k, err := r.Read(buf)
					if !verifyEcho(msg, got, buf[:k]) {
						b.Errorf("echo differs near byte %d", got)
						return
					}
					got += k
					if err != nil {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	// CPU per byte (client, relay and echo server together) is steadier
	// than MB/s on a shared machine.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*size), "cpu-ns/B")
}

// verifyEcho checks that p is the stream of repeated msg at offset off.
func verifyEcho(msg []byte, off int, p []byte) bool {
	for len(p) > 0 {
		o := off % len(msg)
		k := min(len(p), len(msg)-o)
		if !bytes.Equal(p[:k], msg[o:o+k]) {
			return false
		}
		p, off = p[k:], off+k
	}
	return true
}

func benchRelay(b *testing.B, size, conns int) {
	rs := newRelayServer(b, listen(b, echo), Options{})
	benchEcho(b, "ws"+strings.TrimPrefix(rs.URL, "http")+"/", size, conns)
}

func BenchmarkRelayEcho1KiB(b *testing.B)    { benchRelay(b, 1<<10, 1) }
func BenchmarkRelayEcho1KiBx8(b *testing.B)  { benchRelay(b, 1<<10, 8) }
func BenchmarkRelayEcho64KiB(b *testing.B)   { benchRelay(b, 64<<10, 1) }
func BenchmarkRelayEcho64KiBx8(b *testing.B) { benchRelay(b, 64<<10, 8) }
func BenchmarkNaiveRelayEcho1KiB(b *testing.B) {
	benchEcho(b, naiveServer(b, listen(b, echo)), 1<<10, 1)
}
func BenchmarkNaiveRelayEcho64KiB(b *testing.B) {
	benchEcho(b, naiveServer(b, listen(b, echo)), 64<<10, 1)
}
