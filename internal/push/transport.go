package push

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Transport names how a subscriber is connected: a WebSocket or a
// Server-Sent Events stream. Both are ends of the same Conn: the hub, the
// outbound budget, recovery and keepalive do not know which one they feed.
type Transport string

// The transports.
const (
	TransportWebSocket Transport = "websocket"
	TransportSSE       Transport = "sse"
)

// Transports lists every transport, in the order of their index.
var Transports = [...]Transport{TransportWebSocket, TransportSSE}

func (t Transport) index() int {
	if t == TransportSSE {
		return 1
	}
	return 0
}

// transport is what a Conn's writer writes through. Frames are encoded
// once by the transport's kind (the same bytes go to every connection of
// that kind); write sends a batch in one write with one deadline.
type transport interface {
	kind() Transport
	// control encodes a server frame of type typ whose JSON is payload.
	control(typ string, payload []byte) []byte
	ping() []byte
	closeFrame(code int, reason string) []byte
	// write writes the batch in one write, the deadline armed once.
	write(batch []item) error
	// prepareTry sets w up for one write of the batch that does not wait
	// for the socket (the socket and the buffers); false: this transport
	// cannot, the whole batch is for writeRest.
	prepareTry(batch []item, w *nbWrite) bool
	// finishTry is told what that write did (w.n, w.err) and returns the
	// bytes written, with errWouldBlock when the rest is for writeRest.
	finishTry(w *nbWrite) (int, error)
	// writeRest writes what the non-waiting write left: the batch but its
	// first skip bytes.
	writeRest(batch []item, skip int) error
	// end is called once the last frame is written (err nil) or a write
	// failed; readerDone tells whether the reader has gone already.
	end(err error, readerDone bool)
	// abort cuts the connection now (a peer that neither reads nor goes).
	abort()
}

// nbWrite is one write that does not wait for the socket: the socket, the
// buffers of one write(2) or writev(2) (at most IOV_MAX), and what it did:
// the bytes written, and errWouldBlock when the socket did not take them
// all.
type nbWrite struct {
	rc    syscall.RawConn
	bufs  [][]byte
	total int
	n     int
	err   error
}

// messageFrames holds a message's frame per transport, built on the first
// recipient of each kind.
type messageFrames [len(Transports)][]byte

// encodeMessage frames the JSON of a message frame for transport k; event
// is the message's event ("" for user and broadcast messages).
func encodeMessage(k Transport, payload []byte, event string) []byte {
	if k == TransportSSE {
		return sseEvent(sseEventName(event), payload)
	}
	return textFrame(payload)
}

// wsTransport writes WebSocket frames to the hijacked connection.
type wsTransport struct {
	nc    net.Conn
	grace time.Duration
	wt    time.Duration
	// rc is nc's socket when writes can be tried without blocking (nil:
	// the writer goroutine writes everything).
	rc   syscall.RawConn
	bufs [][]byte
}

func newWSTransport(nc net.Conn, grace, wt time.Duration) *wsTransport {
	return &wsTransport{nc: nc, grace: grace, wt: wt, rc: rawSocket(nc)}
}

var _ transport = (*wsTransport)(nil)

func (t *wsTransport) kind() Transport                   { return TransportWebSocket }
func (t *wsTransport) control(_ string, p []byte) []byte { return textFrame(p) }
func (t *wsTransport) ping() []byte                      { return pingFrame }
func (t *wsTransport) closeFrame(code int, reason string) []byte {
	return closeFrame(code, reason)
}
func (t *wsTransport) write(batch []item) error { return writeBatch(t.nc, t.wt, batch) }

func (t *wsTransport) prepareTry(batch []item, w *nbWrite) bool {
	if t.rc == nil {
		return false
	}
	bufs, total := t.bufs[:0], 0
	for i := range batch {
		bufs = append(bufs, batch[i].data)
		total += len(batch[i].data)
	}
	*w = nbWrite{rc: t.rc, bufs: bufs, total: total}
	return true
}

func (t *wsTransport) finishTry(w *nbWrite) (int, error) {
	clear(w.bufs)
	if cap(w.bufs) <= maxBatchFrames {
		t.bufs = w.bufs[:0]
	}
	return w.n, w.err
}

func (t *wsTransport) writeRest(batch []item, skip int) error {
	return writeBatch(t.nc, t.wt, skipWritten(batch, skip))
}
func (t *wsTransport) abort() { _ = t.nc.Close() }

func (t *wsTransport) end(err error, readerDone bool) {
	switch {
	case err != nil:
		_ = t.nc.Close()
	case readerDone:
		lingerClose(t.nc, t.grace)
	default:
		// Let the reader see the peer's close frame, briefly.
		_ = t.nc.SetReadDeadline(time.Now().Add(t.grace))
	}
}

// ringWritesOff makes every non-waiting write one system call (tests);
// ringSends counts the writes made through an io_uring batch.
var (
	ringWritesOff atomic.Bool
	ringSends     atomic.Int64
)

// errNoRing: writes are not batched through io_uring on this system.
var errNoRing = errors.New("io_uring writes are for 64-bit Linux only")
