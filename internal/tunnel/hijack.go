package tunnel

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
)

// Hijacker is an http.ResponseWriter for gorilla's Upgrader.Upgrade that
// hands gorilla a buffered reader of BufferSize bytes and keeps a pointer to
// it in Reader. Upgrade with ReadBufferSize 0 reuses that reader, so the
// relay can ask it how many client bytes are already buffered (gorilla
// itself does not say) and gather frames into one upstream write.
type Hijacker struct {
	http.ResponseWriter
	// Inner does the actual hijack (on Caddy, through
	// http.NewResponseController, since its writers no longer assert to
	// http.Hijacker).
	Inner http.Hijacker
	// BufferSize is the size of the reader; gorilla reuses it only when
	// larger than 256 bytes.
	BufferSize int
	// Reader is the reader handed to gorilla; set by Hijack.
	Reader *bufio.Reader
	// Hook runs whenever Reader must go to the network for more bytes: pass
	// it to the Session (Options.ReadHook) so gathered frames are written
	// upstream before a read that may block. Buffered() alone cannot tell:
	// a control frame left in the buffer after the last data frame makes
	// the next read block although Buffered() > 0.
	Hook ReadHook
}

// ReadHook holds a function run before each network read of the client
// connection. It is set and run by the goroutine that reads the WebSocket.
type ReadHook struct{ fn func() }

// Set installs fn.
func (h *ReadHook) Set(fn func()) { h.fn = fn }

// hookConn runs its hook before reading from the network.
type hookConn struct {
	net.Conn
	hook *ReadHook
}

// Unwrap returns the wrapped connection.
func (c hookConn) Unwrap() net.Conn { return c.Conn }

func (c hookConn) Read(p []byte) (int, error) {
	if c.hook.fn != nil {
		c.hook.fn()
	}
	return c.Conn.Read(p)
}

// Hijack takes the connection over. Bytes a client pipelined behind its
// handshake (already read into the server's buffer) are kept in front of
// the connection rather than refused.
func (h *Hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := h.Inner.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		conn = &prefixConn{Conn: conn, prefix: append([]byte(nil), early...)}
	}
	size := max(h.BufferSize, 4096)
	// gorilla resets the reader onto the returned conn, so the hook must be
	// in the conn itself.
	src := hookConn{Conn: conn, hook: &h.Hook}
	if v, ok := readerPool(size).Get().(*bufio.Reader); ok {
		v.Reset(src)
		h.Reader = v
	} else {
		h.Reader = bufio.NewReaderSize(src, size)
	}
	return src, bufio.NewReadWriter(h.Reader, brw.Writer), nil
}

// Release returns the reader for reuse by a later connection; call it once
// the WebSocket is closed and no goroutine reads from it any more. Reusing
// it saves allocating and zeroing BufferSize bytes per connection.
func (h *Hijacker) Release() {
	if h.Reader == nil {
		return
	}
	h.Reader.Reset(nil)
	readerPool(h.Reader.Size()).Put(h.Reader)
	h.Reader = nil
}

var readerPools sync.Map // size -> *sync.Pool of *bufio.Reader

func readerPool(size int) *sync.Pool {
	p, _ := readerPools.LoadOrStore(size, &sync.Pool{})
	return p.(*sync.Pool)
}

// prefixConn reads prefix before the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the underlying connection when it can.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return io.ErrUnexpectedEOF
}
