package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
)

// SSEOptions is what a handler decides about one SSE subscriber.
type SSEOptions struct {
	ConnOptions
	// Events are the events asked for in the query (validated with
	// ParseEvents); none: the token's events claim, if any.
	Events []string
	// LastEventID is the Last-Event-ID header, or the last_event_id query
	// parameter.
	LastEventID string
	// Retry is the reconnection delay hinted to the client. Default: 2s.
	Retry time.Duration
	// Hijack lets the hub take an HTTP/1.1 connection over and write the
	// stream itself (cheaper per event and per idle subscriber). Set it
	// only when nothing in front of the handler transforms or inspects
	// the response body (e.g. a compressor): they would be bypassed.
	Hijack bool
	// Flush, if set, is the writer flushed after each batch instead of
	// the response itself: one under wrappers that only pass a flush on
	// (and, through Caddy's per-write idle timeout, would arm and clear a
	// deadline around it). Writes still go through the whole response.
	Flush http.ResponseWriter
}

// Refusal is a subscribe refused before the stream started: the handler
// answers it with Status and a JSON body.
type Refusal struct {
	Status int
	Reason string
}

func (r *Refusal) Error() string { return fmt.Sprintf("%d: %s", r.Status, r.Reason) }

// statusFor maps a close code met before the stream starts to an HTTP
// status.
func statusFor(code int) int {
	switch code {
	case CloseUnauthorized:
		return http.StatusUnauthorized
	case CloseForbidden:
		return http.StatusForbidden
	case CloseTryAgainLater, CloseGoingAway:
		return http.StatusServiceUnavailable
	case CloseTooManyPerUser:
		return http.StatusTooManyRequests
	}
	return http.StatusBadRequest
}

// ParseEvents validates the events of a subscribe query (deduplicated,
// order kept); the error wraps ErrBadFrame.
func ParseEvents(events []string) ([]string, error) {
	if len(events) > maxRecoverKeys {
		return nil, fmt.Errorf("%w: too many events", ErrBadFrame)
	}
	return mergeEvents("", events)
}

// ServeSSE serves one Server-Sent Events subscriber on the calling
// goroutine (the request's, which an HTTP/2 or HTTP/3 stream needs) until
// the stream ends. The slot reserved with Reserve is released when it
// returns. Before the stream starts it returns a *Refusal and has written
// nothing; afterwards nil.
func (h *Hub) ServeSSE(w http.ResponseWriter, r *http.Request, s SSEOptions) error {
	start := time.Now()
	tr := newSSETransport(w, s.Flush, h.opts.WriteTimeout, s.Retry, h.opts.History.Size > 0, s.Hijack && r.ProtoMajor == 1)
	if tr.retry <= 0 {
		tr.retry = 2 * time.Second
	}
	c := &Conn{hub: h, tr: tr, id: h.seq.Add(1)}
	// The headers are set before the writer can run (track closes a
	// connection at once when the hub is closing) and unset on a refusal.
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	refuse := func(code int, reason string) error {
		hd.Del("Content-Type")
		hd.Del("Cache-Control")
		hd.Del("X-Accel-Buffering")
		h.untrack(c)
		if code != 0 {
			h.metrics.dropped(reasonFor(code, reason), TransportSSE)
		}
		return &Refusal{Status: statusFor(code), Reason: reason}
	}
	h.track(c)
	if !c.isClosing() {
		if err := h.startSSE(c, tr, r, s, refuse); err != nil {
			return err
		}
	}
	var code int
	select {
	case <-r.Context().Done():
		// The client went (or the server is shutting down the request).
		code = CloseGoingAway
	case <-tr.done:
	case hs := <-tr.taken:
		// The hub writes the stream now: publishes write it directly,
		// and a small goroutine waits for its end; the request's
		// goroutine and net/http's state for it go.
		c.mu.Lock()
		c.inline = hs.raw != nil
		c.mu.Unlock()
		remote := s.Remote
		go func() {
			code := CloseGoingAway
			if hs.drain() {
				code = CloseTooBig
				c.closeWith(code, "the client sent more than an event stream takes", false)
				h.metrics.dropped("frame_too_big", TransportSSE)
			}
			h.endSSE(c, tr, code, remote, start)
		}()
		return nil
	}
	h.endSSE(c, tr, code, s.Remote, start)
	return nil
}

// endSSE ends a stream (code: why, 0 when the writer ended it) once its
// reader saw the end, and releases its slot.
func (h *Hub) endSSE(c *Conn, tr *sseTransport, code int, remote string, start time.Time) {
	h.unregister(c)
	c.closeWith(code, "", false)
	// The writer must be done with the ResponseWriter before the handler
	// returns: a write in progress is bounded by its deadline.
	select {
	case <-tr.done:
	case <-time.After(h.opts.WriteTimeout + time.Second):
		tr.abort()
		<-tr.done
	}
	c.mu.Lock()
	closeCode := c.closeCode
	c.mu.Unlock()
	if ce := h.log.Check(zap.DebugLevel, "subscriber ended"); ce != nil {
		ce.Write(zap.String("user", c.user), zap.String("remote", remote), zap.String("transport", string(TransportSSE)),
			zap.Int("close_code", closeCode), zap.Duration("duration", time.Since(start)))
	}
	h.untrack(c)
}

// startSSE authenticates and registers an SSE subscriber; a refusal is
// returned before anything is written.
func (h *Hub) startSSE(c *Conn, tr *sseTransport, r *http.Request, s SSEOptions, refuse func(int, string) error) error {
	lastID, err := parseLastEventID(s.LastEventID)
	if err != nil {
		_ = refuse(0, "")
		return &Refusal{Status: http.StatusBadRequest, Reason: err.Error()}
	}
	id := s.Identity
	if id == nil {
		if s.Token == "" {
			return refuse(CloseUnauthorized, "token required")
		}
		got, ce := h.verify(s.ConnOptions, s.Token)
		if ce != nil {
			return refuse(ce.code, ce.reason)
		}
		id = &got
	}
	events := s.Events
	if len(events) == 0 && len(id.Events) > 0 {
		if events, err = mergeEvents("", id.Events); err != nil {
			return refuse(CloseBadFrame, err.Error())
		}
	}
	rec := h.ssePositions(r.Context(), c, tr, id.User, events, lastID)
	if ce := h.connect(c, s.ConnOptions, *id, ClientFrame{Events: events, Recover: rec}); ce != nil {
		if c.isRegistered() {
			// The stream started (a replay failed): its close event
			// says why, and the caller's wait ends it.
			return nil
		}
		return refuse(ce.code, ce.reason)
	}
	return nil
}

// ssePositions sets the writer's first positions and returns what to
// recover. With history on, every followed stream gets a position in the
// ids from the first event on, so that a stream on which nothing arrived
// before a disconnect is still recovered: the client's position where the
// Last-Event-ID has one (recovered, with a recovered event), else the
// stream's current position (recovered quietly: that only closes the gap
// between reading it and registering).
func (h *Hub) ssePositions(ctx context.Context, c *Conn, tr *sseTransport, user string, events []string, last map[string]Position) map[string]Position {
	streams := make([]string, 0, len(events)+2)
	streams = append(streams, streamAll)
	if user != "" {
		streams = append(streams, userStream(user))
	}
	for _, e := range events {
		streams = append(streams, eventStream(e))
	}
	if tr.pos == nil {
		// History off: nothing can be recovered, but a client that
		// asks learns it (recovered:false), as on a WebSocket.
		rec := map[string]Position{}
		for _, s := range streams {
			if p, ok := last[sseKey(s)]; ok {
				rec[s] = p
			}
		}
		return rec
	}
	rec := make(map[string]Position, len(streams))
	for _, s := range streams {
		if p, ok := last[sseKey(s)]; ok {
			rec[s] = p
			tr.pos.set(s, p)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, cur, err := h.broker.Since(cctx, s, Position{}, 1)
		cancel()
		if err != nil && !errors.Is(err, broker.ErrNotRecovered) {
			continue
		}
		tr.pos.set(s, cur)
		rec[s] = cur
		if c.quiet == nil {
			c.quiet = make(map[string]struct{})
		}
		c.quiet[s] = struct{}{}
	}
	return rec
}
