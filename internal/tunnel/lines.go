package tunnel

import (
	"bytes"
	"io"
	"net"
	"time"

	"github.com/gorilla/websocket"
)

// skipMessage handles the client messages that are not upstream bytes, and
// reports whether it did: binary messages in Lines mode are dropped (as
// websocketd drops messages of the other type), text messages go to
// Control when it is set.
func (s *Session) skipMessage(mt int, r io.Reader, up net.Conn) bool {
	switch {
	case s.opts.Lines && mt == websocket.BinaryMessage:
		_, _ = io.Copy(io.Discard, r)
		return true
	case s.opts.Control != nil && mt == websocket.TextMessage:
		p, err := io.ReadAll(io.LimitReader(r, MaxControl+1))
		if err != nil {
			return true // NextReader reports the error again
		}
		s.touch()
		reason := "control message too long"
		if len(p) <= MaxControl {
			if err = s.opts.Control(p); err == nil {
				return true
			}
			reason = err.Error()
		} else {
			_, _ = io.Copy(io.Discard, r)
		}
		if s.end(CloseBadControl, reason, EndedByClient) {
			s.sendClose(CloseBadControl, reason)
			_ = s.ws.SetReadDeadline(time.Now().Add(s.opts.CloseGrace))
			if cw, ok := up.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}
		return true
	}
	return false
}

// upstreamLinesToClient sends each upstream line as one text message. The
// line buffer starts small and grows up to MaxLine for a long line; a
// longer one ends the tunnel with CloseTooBig.
func (s *Session) upstreamLinesToClient(up net.Conn) {
	var small [smallReadSize]byte
	buf := small[:0]
	writeFailed := false
	tooLong := false
	for {
		if len(buf) == cap(buf) {
			if len(buf) > s.opts.MaxLine {
				tooLong = true
				break
			}
			grown := make([]byte, len(buf), min(2*cap(buf), s.opts.MaxLine+1))
			copy(grown, buf)
			buf = grown
		}
		n, err := up.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			s.touch()
			start := len(buf)
			buf = buf[:start+n]
			// Send every complete line and keep the rest at the front;
			// the bytes before start hold no line end.
			off, from := 0, start
			for {
				i := bytes.IndexByte(buf[from:], '\n')
				if i < 0 {
					break
				}
				end := from + i
				s.sendDown(websocket.TextMessage, trimCR(buf[off:end]), &writeFailed)
				off, from = end+1, end+1
			}
			buf = buf[:copy(buf, buf[off:])]
			if cap(buf) > smallReadSize && len(buf) <= smallReadSize {
				buf = small[:copy(small[:], buf)]
			}
		}
		if err == nil {
			continue
		}
		if len(buf) > 0 && err == io.EOF {
			s.sendDown(websocket.TextMessage, trimCR(buf), &writeFailed)
		}
		s.upstreamEnded(up, err)
		return
	}
	if tooLong && s.end(CloseTooBig, "output line longer than max_line", EndedByUpstream) {
		s.sendClose(CloseTooBig, "output line longer than max_line")
		_ = s.ws.SetReadDeadline(time.Now().Add(s.opts.CloseGrace))
	}
	// The upstream gets no more reads: end it so it cannot block.
	_ = up.Close()
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}
