package brokertest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a loopback TCP proxy to a broker server that can cut every
// connection through it, so one node loses the broker while others keep it.
type Proxy struct {
	target string
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	down   bool
	losing atomic.Bool
}

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	// lossy: this connection sent a request after LoseReplies, so what
	// the server answers on it is dropped.
	var lossy atomic.Bool
	go func() {
		_, _ = io.Copy(u, readHook{c, func() {
			if p.losing.Load() {
				lossy.Store(true)
			}
		}})
		u.Close()
		c.Close()
	}()
	_, _ = io.Copy(writeGate{c, &lossy}, u)
	u.Close()
	c.Close()
}

// LoseReplies makes every connection that sends a request from now on
// lose what the server sends back on it, while the server still acts on
// the request: a publish that is stored but never acknowledged. Connections
// that only receive (a subscriber's) keep working.
func (p *Proxy) LoseReplies() { p.losing.Store(true) }

type readHook struct {
	r      io.Reader
	onRead func()
}

func (h readHook) Read(b []byte) (int, error) {
	n, err := h.r.Read(b)
	if n > 0 {
		h.onRead()
	}
	return n, err
}

type writeGate struct {
	w    io.Writer
	drop *atomic.Bool
}

func (g writeGate) Write(b []byte) (int, error) {
	if g.drop.Load() {
		return len(b), nil
	}
	return g.w.Write(b)
}

// Cut closes every proxied connection and refuses new ones until Resume.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Resume accepts connections again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
