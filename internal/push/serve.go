package push

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/internal/push/auth"
)

// ConnOptions is what a handler decides about one subscriber before the hub
// takes it over.
type ConnOptions struct {
	// Verifier checks tokens (nil: tokens are not accepted, only Identity).
	Verifier auth.Verifier
	// Identity, when set, is known at upgrade time (query token, header,
	// Caddy auth, anonymous): the connection is connected at once.
	Identity *auth.Identity
	// Token from the query or Authorization header, checked at once.
	Token string
	// MaxFrameSize bounds client frames (close 1009 beyond).
	MaxFrameSize int64
	// MaxEvents bounds the events of one connection (close 4031 beyond).
	MaxEvents int
	// AuthTimeout is how long an unauthenticated connection may stay silent.
	AuthTimeout time.Duration
	// VerifyTimeout bounds one token check.
	VerifyTimeout time.Duration
	// Remote is the client address, for logs.
	Remote string
}

// errClose carries a close code out of frame handling.
type errClose struct {
	code   int
	reason string
}

func (e errClose) Error() string { return fmt.Sprintf("close %d: %s", e.code, e.reason) }

// Serve runs a subscriber connection until it ends, on the calling
// goroutine and, once the connection is registered, on a fresh one (see
// run): call it with go. ws must be freshly upgraded; the slot reserved
// with Reserve is released when the connection ends.
func (h *Hub) Serve(ws *websocket.Conn, s ConnOptions) {
	nc := ws.NetConn()
	tr := newWSTransport(nc, h.opts.CloseGrace, h.opts.WriteTimeout)
	c := &Conn{hub: h, ws: ws, nc: nc, id: h.seq.Add(1), tr: tr, inline: tr.rc != nil}
	h.track(c)

	ws.SetReadLimit(s.MaxFrameSize)
	// Pongs answer our pings and prove the peer alive; pings from the peer
	// are answered through the writer (the only one that writes).
	alive := h.opts.PingInterval + h.opts.PongTimeout
	// Before authentication nothing extends the read deadline: the
	// auth_timeout set at the start holds whatever the client sends.
	ws.SetPongHandler(func(string) error {
		if !c.isRegistered() {
			return nil
		}
		return c.nc.SetReadDeadline(time.Now().Add(alive))
	})
	ws.SetPingHandler(func(data string) error {
		c.sendPong(wsFrame(opPong, []byte(data)))
		if !c.isRegistered() {
			return nil
		}
		return c.nc.SetReadDeadline(time.Now().Add(alive))
	})
	ws.SetCloseHandler(func(code int, _ string) error {
		if code == websocket.CloseNoStatusReceived {
			code = CloseNormal
		}
		c.closeWith(code, "", true)
		return nil
	})
	h.run(c, s, alive, time.Now(), false)
}

// run reads until the connection ends, then tears it down. Authentication
// (token checks, JSON encoding of the first frames) grows a goroutine's
// stack, and a stack only shrinks by halves at GC: so once the connection
// is registered the reading moves to a fresh goroutine (moved), whose
// small stack is what an idle subscriber keeps.
func (h *Hub) run(c *Conn, s ConnOptions, alive time.Duration, start time.Time, moved bool) {
	code, reason, handedOver := h.serve(c, s, alive, start, moved)
	if handedOver {
		return
	}
	defer h.untrack(c)
	if ce := h.log.Check(zap.DebugLevel, "subscriber ended"); ce != nil {
		ce.Write(zap.String("user", c.user), zap.String("remote", s.Remote), zap.String("transport", string(TransportWebSocket)),
			zap.Int("close_code", code), zap.String("reason", reason), zap.Duration("duration", time.Since(start)))
	}
	if code != 0 {
		c.closeWith(code, reason, code == CloseNormal)
		if code != CloseNormal {
			h.metrics.dropped(reasonFor(code, reason), TransportWebSocket)
		}
	}
	h.unregister(c)
	c.mu.Lock()
	c.readerDone = true
	closeNow := c.closeSent || !c.closing
	c.mu.Unlock()
	if closeNow {
		_ = c.nc.Close()
	}
}

// serve is the read loop; it returns the close code to send (0: none, the
// connection already closed or is closing), or handedOver when it started
// a fresh goroutine to go on reading.
func (h *Hub) serve(c *Conn, s ConnOptions, alive time.Duration, start time.Time, moved bool) (code int, reason string, handedOver bool) {
	log := h.log
	handOver := func() bool {
		if moved || !c.isRegistered() {
			return false
		}
		go h.run(c, s, alive, start, true)
		return true
	}
	if !moved {
		if s.Identity == nil && s.Token != "" {
			id, ce := h.verify(s, s.Token)
			if ce != nil {
				return ce.code, ce.reason, false
			}
			s.Identity = &id
		}
		if s.Identity != nil {
			if ce := h.connect(c, s, *s.Identity, ClientFrame{}); ce != nil {
				return ce.code, ce.reason, false
			}
			_ = c.nc.SetReadDeadline(time.Now().Add(alive))
			if handOver() {
				return 0, "", true
			}
		} else {
			_ = c.nc.SetReadDeadline(time.Now().Add(s.AuthTimeout))
		}
	}
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			code, reason = closeCodeFor(c, err, log)
			return code, reason, false
		}
		if c.isRegistered() {
			_ = c.nc.SetReadDeadline(time.Now().Add(alive))
		}
		if typ != websocket.TextMessage {
			return CloseUnsupportedData, "binary frames are not accepted", false
		}
		f, err := ParseClientFrame(data)
		if err != nil {
			return CloseBadFrame, err.Error(), false
		}
		if ce := h.handleFrame(c, s, f); ce != nil {
			return ce.code, ce.reason, false
		}
		if handOver() {
			return 0, "", true
		}
	}
}

func (h *Hub) handleFrame(c *Conn, s ConnOptions, f ClientFrame) *errClose {
	connected := c.isRegistered()
	if !connected {
		if f.Type != "" && f.Type != "connect" {
			return &errClose{CloseBadFrame, "connect first"}
		}
		if s.Verifier == nil || f.Token == "" {
			return &errClose{CloseUnauthorized, "token required"}
		}
		id, ce := h.verify(s, f.Token)
		if ce != nil {
			return ce
		}
		if ce := h.connect(c, s, id, f); ce != nil {
			return ce
		}
		// Authenticated: from now on keepalive, not auth_timeout, bounds
		// the silence.
		_ = c.nc.SetReadDeadline(time.Now().Add(h.opts.PingInterval + h.opts.PongTimeout))
		return nil
	}
	switch f.Type {
	case "connect", "":
		if f.Token != "" && s.Verifier != nil {
			id, ce := h.verify(s, f.Token)
			if ce != nil {
				return ce
			}
			if id.User != c.user {
				return &errClose{CloseUnauthorized, "token names another user"}
			}
		}
		return h.subscribe(c, s, f.Events, f.Recover, "subscribed")
	case "subscribe":
		return h.subscribe(c, s, f.Events, f.Recover, "subscribed")
	case "unsubscribe":
		h.unsubscribe(c, f.Events)
		c.send("unsubscribed", ackFrame("unsubscribed", f.Events))
	}
	return nil
}

func (h *Hub) verify(s ConnOptions, token string) (auth.Identity, *errClose) {
	if s.Verifier == nil {
		return auth.Identity{}, &errClose{CloseUnauthorized, "tokens are not accepted here"}
	}
	ctx, cancel := context.WithTimeout(h.ctx, s.VerifyTimeout)
	defer cancel()
	id, err := s.Verifier.Verify(ctx, token)
	switch {
	case err == nil:
		if !id.Expires.IsZero() && time.Now().After(id.Expires) {
			return id, &errClose{CloseUnauthorized, "token expired"}
		}
		return id, nil
	case errors.Is(err, auth.ErrUnauthorized):
		return id, &errClose{CloseUnauthorized, "unauthorized"}
	default:
		h.log.Warn("verifying subscriber token", zap.String("remote", s.Remote), zap.Error(err))
		return id, &errClose{CloseTryAgainLater, "authentication unavailable"}
	}
}

// connect registers an authenticated connection and subscribes it to the
// events of its first frame.
func (h *Hub) connect(c *Conn, s ConnOptions, id auth.Identity, f ClientFrame) *errClose {
	c.user = id.User
	c.expires = id.Expires
	if id.Events != nil {
		c.allowed = make(map[string]struct{}, len(id.Events))
		for _, e := range id.Events {
			c.allowed[e] = struct{}{}
		}
	}
	for _, e := range f.Events {
		if !c.mayJoin(e) {
			return &errClose{CloseForbidden, "event not allowed: " + e}
		}
	}
	if s.MaxEvents > 0 && len(f.Events) > s.MaxEvents {
		return &errClose{CloseTooManyEvents, "too many events"}
	}
	c.startRecovery(len(f.Recover) > 0)
	if ce := h.register(c, f.Events, connectedFrame(c.user, f.Events)); ce != nil {
		c.endRecovery(nil)
		return ce
	}
	return h.recover(c, f.Recover)
}

func (c *Conn) mayJoin(e string) bool {
	if c.allowed == nil {
		return true
	}
	_, ok := c.allowed[e]
	return ok
}

func (h *Hub) subscribe(c *Conn, s ConnOptions, events []string, rec map[string]Position, ack string) *errClose {
	ok := events[:0:0]
	for _, e := range events {
		if c.mayJoin(e) {
			ok = append(ok, e)
		} else {
			c.send("error", errorFrame("forbidden", "event not allowed: "+e))
		}
	}
	c.startRecovery(len(rec) > 0)
	if !h.addEvents(c, ok, s.MaxEvents) {
		c.endRecovery(nil)
		return &errClose{CloseTooManyEvents, "too many events"}
	}
	c.send(ack, ackFrame(ack, ok))
	return h.recover(c, rec)
}

func (c *Conn) isRegistered() bool {
	c.hub.mu.RLock()
	defer c.hub.mu.RUnlock()
	return c.registered
}

// closeCodeFor maps a read error to the close code to send (0: none).
func closeCodeFor(c *Conn, err error, log *zap.Logger) (int, string) {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		return 0, ""
	}
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		c.mu.Lock()
		c.closing, c.closeSent = true, true // gorilla sent 1009 itself
		c.mu.Unlock()
		c.hub.metrics.dropped("frame_too_big", TransportWebSocket)
		return 0, ""
	case websocket.IsUnexpectedCloseError(err) || websocket.IsCloseError(err):
		return 0, ""
	}
	if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		if !c.isRegistered() {
			return CloseAuthTimeout, "authentication timeout"
		}
		c.hub.metrics.dropped("dead_peer", TransportWebSocket)
		return 0, "" // dead peer: nothing can be written
	}
	if ce := log.Check(zap.DebugLevel, "subscriber read ended"); ce != nil {
		ce.Write(zap.Error(err))
	}
	return 0, ""
}

// reasonFor is the dropped metric's reason of a close with code and
// reason.
func reasonFor(code int, reason string) string {
	switch code {
	case CloseAuthTimeout:
		return "auth_timeout"
	case CloseUnauthorized, CloseForbidden:
		return "unauthorized"
	case CloseTryAgainLater:
		if reason == reasonHistoryUnavailable {
			return "history_unavailable"
		}
		return "auth_unavailable"
	case CloseTooManyPerUser:
		return "max_per_user"
	case CloseTooManyEvents:
		return "max_events"
	case CloseBadFrame, CloseUnsupportedData:
		return "bad_frame"
	case CloseSlow:
		return "slow"
	}
	return "other"
}
