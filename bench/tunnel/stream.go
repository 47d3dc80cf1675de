//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// stream is one echo connection as the load tool sees it: messages go out
// one write (or one WebSocket frame) each, and the echo comes back as a byte
// stream, however the peer re-frames it.
type stream interface {
	// WriteMsg sends p as one TCP write or one binary WebSocket frame.
	WriteMsg(p []byte) error
	// Read reads echoed bytes.
	Read(p []byte) (int, error)
	// Shutdown ends our side cleanly (TCP half-close or a 1000 close frame),
	// waits until the peer ends its side, then closes. Bounded by deadline.
	Shutdown(deadline time.Time) error
	// Close closes the socket at once.
	Close() error
	// SetReadDeadline bounds every read that follows.
	SetReadDeadline(t time.Time) error
}

// target says how to reach an echo service: "tcp://host:port" for direct TCP
// and TCP relays, "ws://host:port/path" for WebSocket tunnels.
type target struct {
	Name string
	URL  string
}

func (t target) isWS() bool { return strings.HasPrefix(t.URL, "ws://") }

// maxMsg is the largest message the tool sends; WebSocket write buffers are
// sized so that every message is one frame and one write.
const maxMsg = 64 << 10

func dial(ctx context.Context, t target) (stream, error) {
	if t.isWS() {
		d := websocket.Dialer{
			HandshakeTimeout: 5 * time.Second,
			ReadBufferSize:   maxMsg,
			WriteBufferSize:  maxMsg,
			Subprotocols:     []string{"binary"},
		}
		c, resp, err := d.DialContext(ctx, t.URL, http.Header{})
		if err != nil {
			if resp != nil {
				return nil, fmt.Errorf("websocket handshake with %s: %w (HTTP %d)", t.URL, err, resp.StatusCode)
			}
			return nil, fmt.Errorf("websocket handshake with %s: %w", t.URL, err)
		}
		return &wsStream{c: c}, nil
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing target %q: %w", t.URL, err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", u.Host, err)
	}
	return &tcpStream{c: c.(*net.TCPConn)}, nil
}

type tcpStream struct{ c *net.TCPConn }

func (s *tcpStream) WriteMsg(p []byte) error           { _, err := s.c.Write(p); return err }
func (s *tcpStream) Read(p []byte) (int, error)        { return s.c.Read(p) }
func (s *tcpStream) Close() error                      { return s.c.Close() }
func (s *tcpStream) SetReadDeadline(t time.Time) error { return s.c.SetReadDeadline(t) }

func (s *tcpStream) Shutdown(deadline time.Time) error {
	defer s.c.Close()
	if err := s.c.CloseWrite(); err != nil {
		return fmt.Errorf("half-closing: %w", err)
	}
	_ = s.c.SetReadDeadline(deadline)
	var buf [512]byte
	for {
		n, err := s.c.Read(buf[:])
		if n > 0 {
			return fmt.Errorf("%d unexpected bytes before EOF", n)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("waiting for peer EOF: %w", err)
		}
	}
}

type wsStream struct {
	c   *websocket.Conn
	cur io.Reader
}

func (s *wsStream) WriteMsg(p []byte) error           { return s.c.WriteMessage(websocket.BinaryMessage, p) }
func (s *wsStream) Close() error                      { return s.c.Close() }
func (s *wsStream) SetReadDeadline(t time.Time) error { return s.c.SetReadDeadline(t) }

func (s *wsStream) Read(p []byte) (int, error) {
	for {
		if s.cur == nil {
			typ, r, err := s.c.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("peer sent a frame of type %d, want binary", typ)
			}
			s.cur = r
		}
		n, err := s.cur.Read(p)
		if errors.Is(err, io.EOF) {
			s.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (s *wsStream) Shutdown(deadline time.Time) error {
	defer s.c.Close()
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := s.c.WriteControl(websocket.CloseMessage, msg, deadline); err != nil {
		return fmt.Errorf("sending close frame: %w", err)
	}
	_ = s.c.SetReadDeadline(deadline)
	for {
		_, _, err := s.c.NextReader()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("waiting for the peer's close frame: %w", err)
		}
	}
}
