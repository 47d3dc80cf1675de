// Package tunnel is the Caddy-free engine of websocket_tunnel: it resolves
// targets (static address, websockify token file, signed ticket, allow-list)
// and relays bytes between a WebSocket and a TCP or unix socket.
package tunnel

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes a tunnel ends with (RFC 6455 section 7.4 and the IANA
// registry; 4408 is ours).
const (
	CloseNormal        = websocket.CloseNormalClosure     // 1000: upstream closed, or the client closed
	CloseGoingAway     = websocket.CloseGoingAway         // 1001: Caddy stops, or the config was unloaded and close_delay passed
	CloseAbnormal      = websocket.CloseAbnormalClosure   // 1006: never sent; logged when the client vanished without a close frame
	CloseInternalError = websocket.CloseInternalServerErr // 1011: the upstream failed mid-stream, or could not be reached
	// CloseUnreachable is sent when the upstream cannot be dialled (refused,
	// timeout, no route). It is 1011 rather than 1014 "bad gateway" because
	// common clients (gorilla/websocket among them) reject 1014 as invalid.
	CloseUnreachable = CloseInternalError
	CloseIdleTimeout = 4408 // idle_timeout passed without a byte either way
	// CloseTooBig is sent when an upstream line is longer than MaxLine.
	CloseTooBig = websocket.CloseMessageTooBig // 1009
	// CloseBadControl is sent for a text message that Control refused.
	CloseBadControl = 4400
)

// Who ended a tunnel, in logs and metrics.
const (
	EndedByClient   = "client"
	EndedByUpstream = "upstream"
	EndedByServer   = "server"
)

// DefaultBufferSize is the default read size on each leg.
const DefaultBufferSize = 64 << 10

// DefaultWriteTimeout is the default bound on one write to the client.
const DefaultWriteTimeout = 10 * time.Second

// smallReadSize is the upstream read buffer of a quiet tunnel.
const smallReadSize = 4 << 10

// Options tune a Session.
type Options struct {
	// BufferSize is how much is read at once from the upstream (and so the
	// largest frame sent to the client) and how much client data is gathered
	// into one write to the upstream. Default: DefaultBufferSize.
	BufferSize int
	// IdleTimeout closes the tunnel with CloseIdleTimeout when no byte moved
	// either way for this long. Zero: never.
	IdleTimeout time.Duration
	// WriteTimeout bounds one frame written to the client (at most
	// BufferSize bytes): a client that accepts nothing for this long ends
	// the tunnel, and both sockets are closed, so one that stops reading
	// cannot pin it. Default: DefaultWriteTimeout.
	WriteTimeout time.Duration
	// CloseGrace bounds every closing step: waiting for the client's close
	// frame after ours, and for the upstream's EOF after a half-close. Past
	// it the sockets are closed hard. Default: 2s.
	CloseGrace time.Duration
	// ReaderSize is the size of the client reader, held for the tunnel's
	// whole life. Default: BufferSize.
	ReaderSize int
	// Lines makes the tunnel line-oriented, websocketd's protocol: each
	// client text message is written upstream followed by "\n", client
	// binary messages are dropped, and each upstream line (ended by "\n"
	// or "\r\n", which are removed) is sent as one text message; a last
	// line without an end is sent when the upstream ends.
	Lines bool
	// MaxLine bounds one upstream line in Lines mode: a longer one ends the
	// tunnel with CloseTooBig. Default: DefaultMaxLine.
	MaxLine int
	// Control, when set, receives each client text message (at most
	// MaxControl bytes) instead of the upstream; an error ends the tunnel
	// with CloseBadControl and the error as the reason.
	Control func([]byte) error
}

// DefaultMaxLine is the default bound on one upstream line in Lines mode.
const DefaultMaxLine = 64 << 10

// MaxControl bounds a client text message handed to Options.Control.
const MaxControl = 1 << 10

// EndReasoner is implemented by an upstream that explains its own end (a
// program: its exit status). The relay asks it once the upstream's reads
// ended with err, and closes the WebSocket with the code and reason given.
type EndReasoner interface {
	EndReason(err error) (code int, reason string)
}

// Result describes a finished tunnel.
type Result struct {
	// BytesUp went from the client to the upstream, BytesDown the other way.
	BytesUp, BytesDown int64
	// Code is the close code sent to the client (CloseAbnormal when the
	// client went away without a close handshake).
	Code    int
	Reason  string
	EndedBy string
	// Duration is the time from Accept to the end of Run.
	Duration time.Duration
}

// Session is one tunnel: a WebSocket already upgraded, relayed to an
// upstream socket by Run. Shutdown may be called from any goroutine at any
// time, also before Run or after it returned.
type Session struct {
	ws    *websocket.Conn
	hj    *hijacker
	br    *bufio.Reader
	opts  Options
	start time.Time
	pool  *sync.Pool

	mu        sync.Mutex
	up        net.Conn
	ended     bool
	code      int
	reason    string
	endedBy   string
	hardTimer *time.Timer
	idleTimer *time.Timer

	bytesUp, bytesDown atomic.Int64
	lastActive         atomic.Int64
	clientClosed       atomic.Bool
}

// newSession wraps a connection Accept upgraded. br, the reader the
// websocket.Conn reads from, tells the relay when no further client frame
// is already buffered, so it flushes its gathered bytes to the upstream
// only then and many small frames become one write.
func newSession(ws *websocket.Conn, hj *hijacker, opts Options) *Session {
	s := &Session{ws: ws, hj: hj, br: hj.reader, opts: opts, start: time.Now(), pool: bufferPool(opts.BufferSize)}
	s.touch()
	return s
}

func (o *Options) setDefaults() {
	if o.BufferSize <= 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.CloseGrace <= 0 {
		o.CloseGrace = 2 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.ReaderSize <= 0 {
		o.ReaderSize = o.BufferSize
	}
	if o.MaxLine <= 0 {
		o.MaxLine = DefaultMaxLine
	}
}

// Subprotocol is the subprotocol agreed in the handshake.
func (s *Session) Subprotocol() string { return s.ws.Subprotocol() }

// Fail ends a session that never got an upstream (dial failed): the client
// gets a close frame with code and reason, and the connection is closed.
func (s *Session) Fail(code int, reason string) Result {
	s.end(code, reason, EndedByUpstream)
	s.sendClose(code, reason)
	// Wait briefly for the client's close frame, so that closing the socket
	// with unread data does not reset the connection before our close frame
	// is read.
	_ = s.ws.SetReadDeadline(time.Now().Add(s.opts.CloseGrace))
	for {
		if _, _, err := s.ws.NextReader(); err != nil {
			break
		}
	}
	return s.finish()
}

// Run relays until both directions ended and returns what happened. It
// closes up and the WebSocket before returning.
func (s *Session) Run(up net.Conn) Result {
	setNoDelay(up)
	setNoDelay(s.ws.NetConn())
	s.mu.Lock()
	s.up = up
	ended := s.ended
	if s.opts.IdleTimeout > 0 && !ended {
		s.idleTimer = time.AfterFunc(s.opts.IdleTimeout, s.checkIdle)
	}
	s.mu.Unlock()
	if ended { // Shutdown came while dialling
		_ = up.Close()
		return s.finish()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s.opts.Lines {
			s.upstreamLinesToClient(up)
		} else {
			s.upstreamToClient(up)
		}
	}()
	s.clientToUpstream(up)
	<-done
	return s.finish()
}

// Shutdown ends the tunnel from outside (Caddy stops, close_delay passed,
// idle timeout): the client gets a close frame, the upstream a half-close,
// and everything is closed within CloseGrace.
func (s *Session) Shutdown(code int, reason string) {
	if !s.end(code, reason, EndedByServer) {
		return
	}
	s.sendClose(code, reason)
	_ = s.ws.SetReadDeadline(time.Now().Add(s.opts.CloseGrace))
}

// end records the first reason the tunnel ends and arms the hard deadline
// that closes both sockets if the orderly close stalls. It reports whether
// this call was the first.
func (s *Session) end(code int, reason, by string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.ended = true
	s.code, s.reason, s.endedBy = code, reason, by
	s.hardTimer = time.AfterFunc(2*s.opts.CloseGrace, s.closeAll)
	return true
}

func (s *Session) closeAll() {
	_ = s.ws.NetConn().Close()
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	if up != nil {
		_ = up.Close()
	}
}

func (s *Session) finish() Result {
	s.mu.Lock()
	if s.hardTimer != nil {
		s.hardTimer.Stop()
	}
	if s.idleTimer != nil {
		s.idleTimer.Stop()
	}
	s.mu.Unlock()
	s.closeAll()
	// Nothing reads the client connection any more.
	s.hj.release()
	s.mu.Lock()
	defer s.mu.Unlock()
	return Result{
		BytesUp:   s.bytesUp.Load(),
		BytesDown: s.bytesDown.Load(),
		Code:      s.code,
		Reason:    s.reason,
		EndedBy:   s.endedBy,
		Duration:  time.Since(s.start),
	}
}

// sendClose writes a close frame; it may run concurrently with a data write
// (gorilla allows WriteControl beside one writer) and gives up after a
// second when that writer is stuck on a client that reads nothing.
func (s *Session) sendClose(code int, reason string) {
	if len(reason) > 123 { // the control frame payload limit, minus the code
		reason = reason[:123]
	}
	_ = s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}

func (s *Session) touch() { s.lastActive.Store(time.Now().UnixNano()) }

func (s *Session) checkIdle() {
	idle := time.Since(time.Unix(0, s.lastActive.Load()))
	if idle >= s.opts.IdleTimeout {
		s.Shutdown(CloseIdleTimeout, "idle timeout")
		return
	}
	s.mu.Lock()
	if !s.ended {
		s.idleTimer.Reset(s.opts.IdleTimeout - idle)
	}
	s.mu.Unlock()
}

// clientToUpstream copies client frames to the upstream. Payloads are
// gathered into one buffer and written when the buffer is full or when no
// more client bytes are buffered (the next read would block), so a burst of
// small frames costs one write, while a lone frame is not delayed.
// gatherFrom is the least the relay holds back to gather with what the
// client's socket already has.
const gatherFrom = 4 << 10

func (s *Session) clientToUpstream(up net.Conn) {
	var bp *[]byte
	var pend []byte
	release := func() {
		if bp != nil {
			s.pool.Put(bp)
			bp, pend = nil, nil
		}
	}
	defer release()
	flush := func() bool {
		if len(pend) == 0 {
			return true
		}
		n, err := up.Write(pend)
		s.bytesUp.Add(int64(n))
		pend = pend[:0]
		s.touch()
		if err != nil {
			if s.end(CloseInternalError, "upstream write failed", EndedByUpstream) {
				s.sendClose(CloseInternalError, "upstream write failed")
			}
			return false
		}
		return true
	}
	// Gathered bytes are written before a read from the client that may
	// block, unless the client's socket already holds more (Linux): then
	// they wait for the rest, within the buffer, and a stream of frames
	// costs fewer, larger writes. Less than gatherFrom is written at once:
	// asking the socket is a system call too, on the path of every
	// keystroke.
	waiting := bytesWaiting(s.ws.NetConn())
	more := func() bool {
		return waiting != nil && len(pend) >= gatherFrom && len(pend) < cap(pend) && waiting()
	}
	s.hj.hook.set(func() {
		if !more() {
			flush()
		}
	})
	for {
		mt, r, err := s.ws.NextReader()
		if err != nil {
			flush()
			s.clientEnded(up, err)
			return
		}
		if s.skipMessage(mt, r, up) {
			continue
		}
		for {
			if bp == nil {
				bp = s.pool.Get().(*[]byte)
				pend = (*bp)[:0]
			}
			if len(pend) == cap(pend) && !flush() {
				return
			}
			start := len(pend)
			n, rerr := r.Read(pend[start:cap(pend)])
			if len(pend) < start {
				// The read hook wrote what was gathered before this read
				// went to the network: move the new bytes to the front.
				copy(pend[len(pend):cap(pend)], pend[start:start+n])
			}
			pend = pend[:len(pend)+n]
			if rerr != nil {
				// io.EOF: message done; anything else NextReader reports again
				if s.opts.Lines && mt == websocket.TextMessage {
					if len(pend) == cap(pend) && !flush() {
						return
					}
					pend = append(pend, '\n')
				}
				break
			}
			// The next read goes to the network: the hook decides.
		}
		if s.br.Buffered() == 0 && !more() {
			if !flush() {
				return
			}
			release()
		}
	}
}

// clientEnded handles the end of the client's stream: a close frame (the
// client's own, or its answer to ours) half-closes the upstream so it sees a
// clean EOF and can finish; anything else closes the upstream at once.
func (s *Session) clientEnded(up net.Conn, err error) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		// gorilla has already answered the close frame with the same code.
		s.clientClosed.Store(true)
		code := ce.Code
		if code == websocket.CloseNoStatusReceived {
			code = CloseNormal
		}
		s.end(code, "client closed", EndedByClient)
		if cw, ok := up.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			_ = up.SetReadDeadline(time.Now().Add(s.opts.CloseGrace))
			return
		}
		_ = up.Close()
		return
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		// Our close frame got no answer within CloseGrace.
		s.end(CloseAbnormal, "client did not answer the close frame", EndedByClient)
	} else {
		s.end(CloseAbnormal, "client connection lost", EndedByClient)
	}
	_ = up.Close()
}

// upstreamToClient sends each upstream read as one binary frame: reads are
// large, so a busy upstream fills big frames while a chatty one is not
// delayed.
//
// An idle tunnel waits on a small buffer; a read that fills it switches to a
// pooled buffer_size one, which goes back to the pool when reads turn small
// again. So a thousand idle sessions do not pin a thousand big buffers,
// while a busy upstream still gets large reads and frames.
func (s *Session) upstreamToClient(up net.Conn) {
	var small [smallReadSize]byte
	var bp *[]byte
	defer func() {
		if bp != nil {
			s.pool.Put(bp)
		}
	}()
	buf := small[:]
	writeFailed := false
	for {
		n, err := up.Read(buf)
		data := buf[:n]
		switch {
		case bp != nil && n < smallReadSize:
			// Traffic turned light: keep the bytes in the small buffer and
			// give the big one back.
			data = small[:copy(small[:], data)]
			s.pool.Put(bp)
			bp, buf = nil, small[:]
		case bp == nil && n == len(small) && s.opts.BufferSize > smallReadSize:
			// data stays in small, written before the next read.
			bp = s.pool.Get().(*[]byte)
			buf = *bp
		}
		if n > 0 {
			s.touch()
			// After the client's close (or a failed write) upstream bytes
			// are drained and dropped until its EOF, so closing the socket
			// does not reset it.
			s.sendDown(websocket.BinaryMessage, data, &writeFailed)
		}
		if err == nil {
			continue
		}
		s.upstreamEnded(up, err)
		return
	}
}

// sendDown writes one message to the client unless it closed or a write
// failed before; a failed write ends the tunnel.
func (s *Session) sendDown(mt int, data []byte, writeFailed *bool) {
	if *writeFailed || s.clientClosed.Load() {
		return
	}
	_ = s.ws.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	if werr := s.ws.WriteMessage(mt, data); werr != nil {
		*writeFailed = true
		reason := "client write failed"
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			reason = "client write timeout"
		}
		if s.end(CloseAbnormal, reason, EndedByClient) {
			// The client is gone or stalled past the write deadline:
			// nothing more can reach it.
			_ = s.ws.NetConn().Close()
		}
		return
	}
	s.bytesDown.Add(int64(len(data)))
}

// upstreamEnded closes the WebSocket after the upstream's reads ended with
// err: 1000 on EOF, 1011 on an error, or what the upstream says.
func (s *Session) upstreamEnded(up net.Conn, err error) {
	code, reason := CloseNormal, "upstream closed"
	if err != io.EOF {
		code, reason = CloseInternalError, "upstream connection failed"
	}
	if er, ok := up.(EndReasoner); ok && !s.hasEnded() {
		code, reason = er.EndReason(err)
	}
	if s.end(code, reason, EndedByUpstream) {
		s.sendClose(code, reason)
		_ = s.ws.SetReadDeadline(time.Now().Add(s.opts.CloseGrace))
	}
}

func (s *Session) hasEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

func setNoDelay(c net.Conn) {
	for {
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			break
		}
		c = u.Unwrap()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}

var pools sync.Map // buffer size -> *sync.Pool of *[]byte

func bufferPool(size int) *sync.Pool {
	if p, ok := pools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := pools.LoadOrStore(size, &sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}})
	return p.(*sync.Pool)
}
