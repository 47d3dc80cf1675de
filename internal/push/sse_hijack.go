package push

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// hijackedStream is an SSE response on HTTP/1.1 that the hub writes itself,
// as it writes a WebSocket: the response head, then each batch as one chunk
// of a chunked body, straight to the connection, without net/http's
// per-request writer, buffers and background reader. On a plain socket a
// publish writes it without waiting (tryWrite), like a WebSocket. The
// caller decides where that is right (SSEOptions.Hijack): only where
// nothing in front of the handler transforms the body.
type hijackedStream struct {
	nc  net.Conn
	raw syscall.RawConn // nil: not a plain socket (TLS): no tryWrite
	// br holds what net/http had read ahead from the client (nil: none).
	br   *bufio.Reader
	head []byte // the response head, written with the first chunk
	hdr  []byte
	bufs [][]byte
	// one is a small chunk joined for one non-waiting write (pooled).
	one *[]byte
	// rest is what the non-waiting write left for writeRest (a copy: the
	// composed events are the transport's reused buffer).
	rest []byte
}

var (
	crlf          = []byte("\r\n")
	lastChunk     = []byte("0\r\n\r\n")
	hopByHopNames = []string{"Connection", "Content-Length", "Keep-Alive", "Transfer-Encoding", "Trailer", "Upgrade"}
)

// takeOver hijacks the response of w, or returns nil and leaves w as it
// was when the connection cannot be taken over.
func takeOver(w http.ResponseWriter, rc *http.ResponseController) *hijackedStream {
	head := responseHead(w.Header())
	nc, brw, err := rc.Hijack()
	if err != nil {
		return nil
	}
	// The server's read and write deadlines are the stream's to set now.
	_ = nc.SetDeadline(time.Time{})
	hs := &hijackedStream{nc: nc, raw: rawSocket(nc), head: head, hdr: make([]byte, 0, 20)}
	if brw.Reader.Buffered() > 0 {
		hs.br = brw.Reader
	}
	return hs
}

// responseHead is the 200 response with the handler's headers as net/http
// would have written them, the body chunked.
func responseHead(h http.Header) []byte {
	h = h.Clone()
	for _, k := range hopByHopNames {
		h.Del(k)
	}
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	h.Set("Transfer-Encoding", "chunked")
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&b) // Header.Write replaces line breaks in values
	b.WriteString("\r\n")
	return b.Bytes()
}

// chunk returns the buffers of one chunk of b (with the head first when
// withHead).
func (hs *hijackedStream) chunk(b []byte, withHead bool) [][]byte {
	hs.hdr = strconv.AppendInt(hs.hdr[:0], int64(len(b)), 16)
	hs.hdr = append(hs.hdr, crlf...)
	bufs := hs.bufs[:0]
	if withHead {
		bufs = append(bufs, hs.head)
	}
	bufs = append(bufs, hs.hdr, b, crlf)
	hs.bufs = bufs
	return bufs
}

// writeBlocking writes b as one chunk, waiting at most timeout.
func (hs *hijackedStream) writeBlocking(timeout time.Duration, b []byte, withHead bool) error {
	bufs := hs.chunk(b, withHead)
	if withHead {
		hs.head = nil
	}
	return hs.writeBufs(timeout, bufs)
}

func (hs *hijackedStream) writeBufs(timeout time.Duration, bufs [][]byte) error {
	_ = hs.nc.SetWriteDeadline(time.Now().Add(timeout))
	if hs.raw != nil {
		nb := net.Buffers(bufs)
		_, err := nb.WriteTo(hs.nc)
		clear(bufs)
		return err
	}
	// One write, so that TLS makes one record of it.
	bp := joinBufs(bufs)
	clear(bufs)
	_, err := hs.nc.Write(*bp)
	putBuf(bp)
	return err
}

// prepareTry sets w up to write b as one chunk without waiting for the
// socket.
func (hs *hijackedStream) prepareTry(b []byte, w *nbWrite) {
	bufs := hs.chunk(b, false)
	total := len(hs.hdr) + len(b) + len(crlf)
	if total <= maxJoinedChunk {
		// One buffer: a plain send is cheaper for the kernel than a
		// gathered one, and copying a small chunk costs less than that.
		hs.one = joinBufs(bufs)
		clear(bufs)
		bufs = append(bufs[:0], *hs.one)
		hs.bufs = bufs
	}
	*w = nbWrite{rc: hs.raw, bufs: bufs, total: total}
}

// maxJoinedChunk is the largest chunk prepareTry copies into one buffer.
const maxJoinedChunk = 4 << 10

// finishTry keeps what the socket did not take for writeRest.
func (hs *hijackedStream) finishTry(w *nbWrite) (int, error) {
	if w.err == errWouldBlock {
		n := w.n
		rest := make([]byte, 0, w.total-n)
		for _, p := range w.bufs {
			if n >= len(p) {
				n -= len(p)
				continue
			}
			rest = append(rest, p[n:]...)
			n = 0
		}
		hs.rest = rest
	}
	clear(w.bufs)
	if hs.one != nil {
		putBuf(hs.one)
		hs.one = nil
	}
	return w.n, w.err
}

// writeRest writes what tryWrite left, waiting at most timeout.
func (hs *hijackedStream) writeRest(timeout time.Duration) error {
	rest := hs.rest
	hs.rest = nil
	if len(rest) == 0 {
		return nil
	}
	_ = hs.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := hs.nc.Write(rest)
	return err
}

// end ends the body (after the close event, err nil) and the connection.
func (hs *hijackedStream) end(err error, timeout time.Duration) {
	if err == nil {
		_ = hs.nc.SetWriteDeadline(time.Now().Add(timeout))
		_, _ = hs.nc.Write(lastChunk)
	}
	_ = hs.nc.Close()
}

// drain reads what the client sends until the connection ends: an
// EventSource sends nothing after its request, so this only waits for the
// end; what arrives is discarded, up to maxSSEClientBytes (tooMuch: the
// client sent more). It is the stream's only goroutine while it is idle.
func (hs *hijackedStream) drain() (tooMuch bool) {
	read := 0
	if hs.br != nil {
		n, err := hs.br.Discard(hs.br.Buffered())
		if err != nil {
			return false
		}
		read += n
		hs.br = nil
	}
	var buf [512]byte
	for read <= maxSSEClientBytes {
		n, err := hs.nc.Read(buf[:])
		if err != nil {
			return false
		}
		read += n
	}
	return true
}

// maxSSEClientBytes bounds what a client may send on a stream taken over
// (an EventSource sends nothing after its request; room is left for a
// pipelined request or two): past it the stream ends.
const maxSSEClientBytes = 64 << 10
