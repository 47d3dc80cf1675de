package tunnel

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
)

// hijacker is the http.ResponseWriter Accept hands gorilla's
// Upgrader.Upgrade: it hijacks through http.NewResponseController and gives
// gorilla a pooled reader of bufferSize bytes, which Upgrade with
// ReadBufferSize 0 reuses. So the relay can ask that reader how many client
// bytes are already buffered (gorilla itself does not say) and gather frames
// into one upstream write.
type hijacker struct {
	http.ResponseWriter
	// bufferSize is the size of the reader; gorilla reuses it only when
	// larger than 256 bytes.
	bufferSize int
	// reader is the reader handed to gorilla; set by Hijack.
	reader *bufio.Reader
	// hook runs whenever reader must go to the network for more bytes: the
	// Session sets it so gathered frames are written upstream before a read
	// that may block. Buffered() alone cannot tell: a control frame left in
	// the buffer after the last data frame makes the next read block
	// although Buffered() > 0.
	hook readHook
}

// readHook holds a function run before each network read of the client
// connection. It is set and run by the goroutine that reads the WebSocket.
type readHook struct{ fn func() }

func (h *readHook) set(fn func()) { h.fn = fn }

// hookConn runs its hook before reading from the network.
type hookConn struct {
	net.Conn
	hook *readHook
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
func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		conn = &prefixConn{Conn: conn, prefix: append([]byte(nil), early...)}
	}
	size := max(h.bufferSize, 4096)
	// gorilla resets the reader onto the returned conn, so the hook must be
	// in the conn itself.
	src := hookConn{Conn: conn, hook: &h.hook}
	if v, ok := readerPool(size).Get().(*bufio.Reader); ok {
		v.Reset(src)
		h.reader = v
	} else {
		h.reader = bufio.NewReaderSize(src, size)
	}
	return src, bufio.NewReadWriter(h.reader, brw.Writer), nil
}

// release returns the reader for reuse by a later connection, once the
// WebSocket is closed and no goroutine reads from it any more. Reusing it
// saves allocating and zeroing bufferSize bytes per connection.
func (h *hijacker) release() {
	if h.reader == nil {
		return
	}
	h.reader.Reset(nil)
	readerPool(h.reader.Size()).Put(h.reader)
	h.reader = nil
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
