package caddyws

import (
	"errors"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddyws/caddyws/internal/push"
	"github.com/caddyws/caddyws/internal/push/auth"
)

// The Server-Sent Events end of websocket_push: the same hub, auth,
// addressing, limits and recovery as a WebSocket subscriber
// (docs/push-protocol.md, "Server-Sent Events").

// wantsEventStream reports a GET (or HEAD) whose Accept names
// text/event-stream, as an EventSource sends.
func wantsEventStream(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

func (p *Push) allows(t push.Transport) bool { return slices.Contains(p.Transports, string(t)) }

// identify sets what the subscriber's identity comes from: Caddy's auth, an
// anonymous identity, or a token from the query parameter, the
// Authorization header or the token cookie (in that order).
func (p *Push) identify(r *http.Request, s *push.ConnOptions) error {
	switch p.Auth.Mode {
	case "anonymous":
		s.Identity = &auth.Identity{}
	case "caddy":
		user, err := p.Auth.caddyUser(r)
		if err != nil {
			return err
		}
		s.Identity = &auth.Identity{User: user}
	default:
		s.Token = r.URL.Query().Get(p.Auth.TokenParam)
		if h := r.Header.Get("Authorization"); s.Token == "" && len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			s.Token = strings.TrimSpace(h[7:])
		}
		if s.Token == "" && p.Auth.TokenCookie != "" {
			if c, err := r.Cookie(p.Auth.TokenCookie); err == nil {
				s.Token = c.Value
			}
		}
	}
	return nil
}

// maxLastEventIDHeader bounds the Last-Event-ID the handler passes on (the
// hub bounds it again).
const maxLastEventIDHeader = 16 << 10

func (p *Push) subscribeSSE(w http.ResponseWriter, r *http.Request) error {
	if !p.allows(push.TransportSSE) {
		return refuse(w, r, http.StatusNotAcceptable, "Server-Sent Events are not enabled on this route (transports)")
	}
	if p.Auth == nil {
		return refuse(w, r, http.StatusForbidden, "subscribing is not enabled on this route (no auth configured)")
	}
	if !originAllowed(r, p.Origins) {
		return refuse(w, r, http.StatusForbidden, "origin not allowed")
	}
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	q := r.URL.Query()
	events, err := push.ParseEvents(q["event"])
	if err != nil {
		return refuse(w, r, http.StatusBadRequest, err.Error())
	}
	if len(events) > p.MaxEvents {
		return refuse(w, r, http.StatusBadRequest, "too many events")
	}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = q.Get("last_event_id")
	}
	if len(last) > maxLastEventIDHeader {
		return refuse(w, r, http.StatusBadRequest, "Last-Event-ID too long")
	}
	s := push.SSEOptions{
		ConnOptions: push.ConnOptions{
			Verifier:      p.verifier,
			MaxFrameSize:  p.MaxFrameSize,
			MaxEvents:     p.MaxEvents,
			AuthTimeout:   time.Duration(p.AuthTimeout),
			VerifyTimeout: 10 * time.Second,
			Remote:        r.RemoteAddr,
		},
		Events:      events,
		LastEventID: last,
		Hijack:      plainResponse(w),
	}
	if s.Hijack {
		s.Flush = underIdleTimeout(w)
	}
	if err := p.identify(r, &s.ConnOptions); err != nil {
		return refuse(w, r, http.StatusUnauthorized, err.Error())
	}
	if s.Identity == nil && s.Token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="websocket_push"`)
		return refuse(w, r, http.StatusUnauthorized, "token required (query parameter "+p.Auth.TokenParam+", Authorization: Bearer or cookie "+p.Auth.TokenCookie+")")
	}
	hub := p.ref.hub()
	if err := hub.Reserve(push.TransportSSE); err != nil {
		return refuse(w, r, http.StatusServiceUnavailable, "too many connections")
	}
	err = hub.ServeSSE(w, r, s)
	var ref *push.Refusal
	if errors.As(err, &ref) {
		return refuse(w, r, ref.Status, ref.Reason)
	}
	return err
}

// plainResponse reports whether every writer between Caddy's server and
// this handler only passes the response through: the server's own (HTTP/1.1, HTTP/2, HTTP/3) and
// Caddy's core wrappers (the access log's recorder, the server's). Any
// other (encode, a header directive that defers, a third-party module)
// may transform or inspect the body, so the stream is then written
// through it rather than taken over.
func plainResponse(w http.ResponseWriter) bool {
	for range 16 {
		t := reflect.TypeOf(w)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if pkg := t.PkgPath(); !serverWriterPkgs[pkg] && pkg != caddyhttpPkg {
			return false
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return true
		}
		w = u.Unwrap()
	}
	return false
}

var caddyhttpPkg = reflect.TypeOf(caddyhttp.ResponseWriterWrapper{}).PkgPath()

// serverWriterPkgs are the packages of the servers' own response writers
// (HTTP/1.1, HTTP/2 as Caddy serves it, HTTP/3).
var serverWriterPkgs = map[string]bool{"net/http": true, "golang.org/x/net/http2": true, "github.com/quic-go/quic-go/http3": true}

// underIdleTimeout returns the writer under Caddy's per-write idle timeout
// in w's chain (nil: none). Its Flush arms the write deadline and clears it
// again, on HTTP/2 and HTTP/3 a round trip to the connection each time; an
// event stream bounds its writes by the hub's sweep, and flushing below it
// skips those two round trips per event while the writes still go through
// the whole chain (the access log counts them). Only used where
// plainResponse holds: the writers above it only pass a flush on.
func underIdleTimeout(w http.ResponseWriter) http.ResponseWriter {
	for range 16 {
		if iw, ok := w.(*caddyhttp.IdleTimeoutWriter); ok {
			return iw.Unwrap()
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
	return nil
}
