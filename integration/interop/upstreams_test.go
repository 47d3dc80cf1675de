package interop

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// randomBytes is deterministic per seed, so every peer gets the same input.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// upstreamEnd is how one upstream connection ended.
type upstreamEnd struct {
	bytes int64 // bytes received from the tunnel
	eof   bool  // a clean EOF (half-close or close), not a reset
}

// echoUpstream is the TCP service behind the tunnels: it echoes, answers
// the client's EOF with its own, and reports how each connection ended.
type echoUpstream struct {
	ln   net.Listener
	mu   sync.Mutex
	ends []upstreamEnd
}

func startEchoUpstream() (*echoUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &echoUpstream{ln: ln}
	go e.serve()
	return e, nil
}

func (e *echoUpstream) addr() string { return e.ln.Addr().String() }

func (e *echoUpstream) serve() {
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		go e.handle(c.(*net.TCPConn))
	}
}

func (e *echoUpstream) handle(c *net.TCPConn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := c.Read(buf)
		n += int64(k)
		if k > 0 {
			if _, werr := c.Write(buf[:k]); werr != nil {
				e.record(upstreamEnd{bytes: n})
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = c.CloseWrite()
			}
			e.record(upstreamEnd{bytes: n, eof: errors.Is(err, io.EOF)})
			return
		}
	}
}

func (e *echoUpstream) record(end upstreamEnd) {
	e.mu.Lock()
	e.ends = append(e.ends, end)
	e.mu.Unlock()
}

// waitEnd waits for a connection that received exactly n bytes to end.
func (e *echoUpstream) waitEnd(n int64, within time.Duration) (upstreamEnd, bool) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for i, end := range e.ends {
			if end.bytes == n {
				e.ends = append(e.ends[:i], e.ends[i+1:]...)
				e.mu.Unlock()
				return end, true
			}
		}
		e.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return upstreamEnd{}, false
}

// eofPayload is what eofUpstream sends to every connection before closing.
var eofPayload = randomBytes(42, 1<<20+17)

// eofUpstream writes eofPayload and closes: the "upstream EOF" case.
type eofUpstream struct{ ln net.Listener }

func startEOFUpstream() (*eofUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &eofUpstream{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := c.Write(eofPayload); err != nil {
					return
				}
				// Half-close, then wait for the other side to finish, so the
				// close is a FIN and never a reset of unread data.
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return u, nil
}

func (u *eofUpstream) addr() string { return u.ln.Addr().String() }

// deadAddr is a loopback port nothing listens on.
func deadAddr() (string, error) { return freeAddr() }
