package caddyws

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/internal/push"
	"github.com/caddyws/caddyws/internal/push/auth"
)

// Push is the websocket_push handler: browsers subscribe with a WebSocket
// upgrade or a Server-Sent Events stream (a GET with Accept:
// text/event-stream), backends publish with a POST, on the same route or on
// different routes or sites sharing a hub by name. Other requests get 405. The wire
// protocol is docs/push-protocol.md; the user guide is docs/push.md.
type Push struct {
	// Hub names the hub this handler serves. Handlers with the same hub
	// name share subscribers, so subscribing and publishing can live on
	// different routes or sites. Without a name, the handler shares a hub
	// only with the other unnamed handlers of its site: the same HTTP
	// server (listen addresses) and the same host names of the top-level
	// route (the site block) it sits in; that hub is called
	// site:<hosts>@<listen addresses> (hosts * when the route has none) in
	// the admin API and metrics, and names starting with "site:" are
	// reserved for it. The hub-wide settings (queue_size, ping_interval,
	// pong_timeout, write_timeout, max_connections,
	// max_connections_per_user, history, broker) may be set on any one of
	// the handlers of a hub; two handlers setting one differently is a
	// config error. Default: none (the site's own hub).
	Hub string `json:"hub,omitempty"`

	// Auth says who a subscriber is. Without it the handler only publishes
	// (upgrades get 403): there is no implicit anonymous mode.
	// Default: none.
	Auth *PushAuth `json:"auth,omitempty"`

	// PublishKey lets a publisher in with `Authorization: Bearer <key>`.
	// Placeholders such as {env.PUSH_KEY} are expanded at load time.
	// Default: none.
	PublishKey string `json:"publish_key,omitempty"`
	// PublishJWT lets a publisher in with a JWT signed with this key. With
	// the same key as Auth's jwt it must set require (a claim subscriber
	// tokens lack), or the config is refused. Default: none.
	PublishJWT *PushJWT `json:"publish_jwt,omitempty"`
	// PublishAuth "none" opens publishing to anyone who reaches the route
	// (guard it with matchers such as remote_ip). Publishing is closed
	// unless publish_key, publish_jwt or publish_auth none is set.
	// Default: empty (closed).
	PublishAuth string `json:"publish_auth,omitempty"`

	// Transports lists how subscribers may connect: websocket (an upgrade)
	// and sse (a GET with Accept: text/event-stream, answered with a
	// Server-Sent Events stream). A request for a transport not listed gets
	// 400 (websocket) or 406 (sse). Default: websocket sse.
	Transports []string `json:"transports,omitempty"`

	// Origins widens the origin check of the upgrade: full origins
	// ("https://app.example.com"), wildcard hosts ("https://*.example.com")
	// or "*". Requests without Origin (non-browser clients) are accepted.
	// Default: same origin as the request's host.
	Origins []string `json:"origins,omitempty"`

	// MaxFrameSize bounds a client frame; larger ones close with 1009.
	// Default: 64KiB.
	MaxFrameSize int64 `json:"max_frame_size,omitempty"`
	// MaxEvents bounds the events one connection subscribes to; more close
	// it with 4031. Default: 100.
	MaxEvents int `json:"max_events,omitempty"`
	// MaxBodySize bounds a publish body (413 beyond). Default: 1MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`
	// MaxPublishTargets bounds the distinct users one publish addresses
	// with userIds (413 beyond): each target is a stream of its own in the
	// broker and its history. Default: 1000.
	MaxPublishTargets int `json:"max_publish_targets,omitempty"`
	// MaxConnections bounds the hub's connections; upgrades beyond get 503.
	// Default: 0 (no limit).
	MaxConnections int `json:"max_connections,omitempty"`
	// MaxConnectionsPerUser bounds one user's connections; more close with
	// 4030. Default: 0 (no limit).
	MaxConnectionsPerUser int `json:"max_connections_per_user,omitempty"`
	// QueueSize is how many frames may wait for a slow connection before it
	// is closed with 4029. Default: 256.
	QueueSize int `json:"queue_size,omitempty"`
	// QueueBytes bounds the bytes waiting for one connection: messages,
	// history replays, acknowledgements, errors and control frames all
	// count. Beyond it the connection is closed with 4029. Default: 4MiB.
	QueueBytes int `json:"queue_bytes,omitempty"`
	// PingInterval is how often idle connections are pinged. Default: 25s.
	PingInterval caddy.Duration `json:"ping_interval,omitempty"`
	// PongTimeout is how long after a ping a silent peer is considered dead
	// and removed. Default: 10s.
	PongTimeout caddy.Duration `json:"pong_timeout,omitempty"`
	// WriteTimeout bounds one write to a subscriber; a peer that accepts no
	// data for that long is removed. Default: 10s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
	// AuthTimeout is how long a connection that must send its token may
	// stay silent before it is closed with 4008. Default: 10s.
	AuthTimeout caddy.Duration `json:"auth_timeout,omitempty"`

	// History keeps recent messages per stream so reconnecting clients
	// recover what they missed. Default: off.
	History *PushHistory `json:"history,omitempty"`

	// BrokerRaw carries messages between Caddy nodes: a module of the
	// websocket_push.brokers namespace (memory, nats, redis).
	// Default: memory (one node).
	BrokerRaw json.RawMessage `json:"broker,omitempty" caddy:"namespace=websocket_push.brokers inline_key=type"`

	hubName     string // Hub, or the site's unnamed hub
	ref         *hubRef
	verifier    auth.Verifier
	pubVerifier auth.Verifier
	publishKey  []byte
	upgrader    websocket.Upgrader
	logger      *zap.Logger
	multiNode   bool // in hubRef.merged: the broker reaches other nodes
}

// PushHistory bounds the history kept per stream.
type PushHistory struct {
	// Size is the most messages kept per stream. Default: 0 (off).
	Size int `json:"size,omitempty"`
	// TTL is how long a message is kept. Default: 0 (until Size evicts it).
	TTL caddy.Duration `json:"ttl,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Push) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.websocket_push",
		New: func() caddy.Module { return new(Push) },
	}
}

// Provision sets defaults, builds the verifiers and gets or creates the hub.
func (p *Push) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	p.setDefaults()
	if err := p.Validate(); err != nil {
		return err
	}
	if err := registerPushMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	var err error
	if p.Auth != nil {
		if p.verifier, err = p.Auth.verifier(repl, p.logger); err != nil {
			return fmt.Errorf("websocket_push auth: %w", err)
		}
	}
	if p.PublishKey != "" {
		p.publishKey = []byte(repl.ReplaceKnown(p.PublishKey, ""))
		if len(p.publishKey) == 0 {
			return errors.New("websocket_push: publish_key is empty (is the environment variable set?)")
		}
	}
	if p.PublishJWT != nil {
		cfg := p.PublishJWT.config(repl)
		cfg.UserOptional = true
		if p.pubVerifier, err = auth.NewJWT(cfg); err != nil {
			return fmt.Errorf("websocket_push publish_jwt: %w", err)
		}
		if err := p.checkPublishKeyDistinct(); err != nil {
			return err
		}
	}
	p.upgrader = websocket.Upgrader{
		ReadBufferSize:  512,
		WriteBufferPool: &sync.Pool{}, // gorilla never writes data: the hub's writers do
		CheckOrigin:     func(*http.Request) bool { return true },
	}

	p.hubName = p.Hub
	if p.hubName == "" {
		p.hubName = siteHubName(ctx)
	}
	p.ref, err = acquireHub(ctx, p)
	return err
}

// checkPublishKeyDistinct refuses publish_jwt with the subscribers' key
// and no require: every subscriber token would then publish.
func (p *Push) checkPublishKeyDistinct() error {
	sub, ok := p.verifier.(*auth.JWT)
	if !ok || len(p.PublishJWT.Require) > 0 || !sub.SameKey(p.pubVerifier.(*auth.JWT)) {
		return nil
	}
	return errors.New("websocket_push: publish_jwt has the same key as auth jwt, so every subscriber token could publish; add a claim only publisher tokens carry (require role publisher) or use a separate key")
}

// setDefaults is where the handler's defaults are set. The hub settings
// (queue_size, ping_interval, pong_timeout, write_timeout) stay zero here:
// zero means "not set on this handler" when handlers sharing a hub merge
// their settings, and package push defaults them when the hub is made.
func (p *Push) setDefaults() {
	if p.Auth != nil {
		p.Auth.setDefaults()
	}
	if p.MaxFrameSize == 0 {
		p.MaxFrameSize = 64 << 10
	}
	if p.MaxEvents == 0 {
		p.MaxEvents = 100
	}
	if p.MaxBodySize == 0 {
		p.MaxBodySize = 1 << 20
	}
	if p.MaxPublishTargets == 0 {
		p.MaxPublishTargets = 1000
	}
	if len(p.Transports) == 0 {
		p.Transports = []string{string(push.TransportWebSocket), string(push.TransportSSE)}
	}
	if p.AuthTimeout == 0 {
		p.AuthTimeout = caddy.Duration(10 * time.Second)
	}
}

func (p *Push) hubOptions() push.Options {
	o := push.Options{
		Name:                  p.Hub,
		QueueSize:             p.QueueSize,
		QueueBytes:            p.QueueBytes,
		PingInterval:          time.Duration(p.PingInterval),
		PongTimeout:           time.Duration(p.PongTimeout),
		WriteTimeout:          time.Duration(p.WriteTimeout),
		MaxConnections:        p.MaxConnections,
		MaxConnectionsPerUser: p.MaxConnectionsPerUser,
	}
	if p.History != nil {
		o.History = broker.History{Size: p.History.Size, TTL: time.Duration(p.History.TTL)}
	}
	return o
}

// Validate checks what Provision could not.
func (p *Push) Validate() error {
	if p.Auth == nil && p.PublishAuth == "" && p.PublishKey == "" && p.PublishJWT == nil {
		return errors.New("websocket_push: set auth (to subscribe) and/or publish_key, publish_jwt or publish_auth none (to publish)")
	}
	if strings.HasPrefix(p.Hub, siteHubPrefix) {
		return fmt.Errorf("websocket_push: hub names starting with %q are reserved for the unnamed hub of a site, got %q", siteHubPrefix, p.Hub)
	}
	if strings.ContainsAny(p.Hub, "\r\n") {
		return fmt.Errorf("websocket_push: hub name %q has a line break", p.Hub)
	}
	for _, t := range p.Transports {
		if t != string(push.TransportWebSocket) && t != string(push.TransportSSE) {
			return fmt.Errorf("websocket_push: unknown transport %q (want websocket or sse)", t)
		}
	}
	if p.PublishAuth != "" && p.PublishAuth != "none" {
		return fmt.Errorf("websocket_push: publish_auth must be \"none\", not %q", p.PublishAuth)
	}
	if p.PublishAuth == "none" && (p.PublishKey != "" || p.PublishJWT != nil) {
		return errors.New("websocket_push: publish_auth none contradicts publish_key/publish_jwt")
	}
	if p.PingInterval < 0 || time.Duration(p.PingInterval) >= 60*time.Second {
		return errors.New("websocket_push: ping_interval must be between 0 and 60s")
	}
	if p.MaxFrameSize < 256 || p.MaxEvents < 0 || p.QueueSize < 0 || p.QueueBytes < 0 || p.MaxConnections < 0 || p.MaxConnectionsPerUser < 0 || p.MaxPublishTargets < 0 {
		return errors.New("websocket_push: limits must be positive (max_frame_size at least 256)")
	}
	return nil
}

// Cleanup releases this config's hold on the hub; the last holder closes it
// (every connection gets 1001).
func (p *Push) Cleanup() error {
	if p.ref == nil {
		return nil
	}
	return p.ref.release()
}

// ServeHTTP subscribes WebSocket upgrades and publishes POSTs. Refusals
// before an upgrade go through refuse (module.go).
func (p *Push) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	switch {
	case isExtendedConnect(r):
		return refuse(w, r, http.StatusHTTPVersionNotSupported, "websocket_push needs WebSocket over HTTP/1.1")
	case websocket.IsWebSocketUpgrade(r):
		if !p.allows(push.TransportWebSocket) {
			return refuse(w, r, http.StatusBadRequest, "WebSocket is not enabled on this route (transports)")
		}
		return p.subscribe(w, r)
	case wantsEventStream(r):
		return p.subscribeSSE(w, r)
	case r.Method == http.MethodPost:
		return p.publish(w, r)
	default:
		w.Header().Set("Allow", http.MethodPost)
		return refuse(w, r, http.StatusMethodNotAllowed, "publish with POST, subscribe with a WebSocket upgrade or a GET with Accept: text/event-stream")
	}
}

func (p *Push) subscribe(w http.ResponseWriter, r *http.Request) error {
	if p.Auth == nil {
		return refuse(w, r, http.StatusForbidden, "subscribing is not enabled on this route (no auth configured)")
	}
	if !originAllowed(r, p.Origins) {
		return refuse(w, r, http.StatusForbidden, "origin not allowed")
	}
	sess := push.ConnOptions{
		Verifier:      p.verifier,
		MaxFrameSize:  p.MaxFrameSize,
		MaxEvents:     p.MaxEvents,
		AuthTimeout:   time.Duration(p.AuthTimeout),
		VerifyTimeout: 10 * time.Second,
		Remote:        r.RemoteAddr,
	}
	if err := p.identify(r, &sess); err != nil {
		return refuse(w, r, http.StatusUnauthorized, err.Error())
	}
	if err := p.ref.hub().Reserve(push.TransportWebSocket); err != nil {
		return refuse(w, r, http.StatusServiceUnavailable, "too many connections")
	}
	ws, err := p.upgrader.Upgrade(hijacker{w}, r, nil)
	if err != nil {
		p.ref.hub().Release()
		p.logger.Debug("websocket upgrade failed", zap.Error(err))
		return nil // gorilla has answered
	}
	// The reader runs on a fresh goroutine so the request's deep stack is
	// not kept alive for the connection's lifetime.
	go p.ref.hub().Serve(ws, sess)
	return nil
}

func (p *Push) publish(w http.ResponseWriter, r *http.Request) error {
	if !p.publisherAllowed(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="websocket_push"`)
		return refuse(w, r, http.StatusUnauthorized, "publisher not authenticated")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return refuse(w, r, http.StatusRequestEntityTooLarge, "body too large")
		}
		return refuse(w, r, http.StatusBadRequest, "reading body: "+err.Error())
	}
	req, err := push.ParsePublishBody(body)
	if err != nil {
		return refuse(w, r, http.StatusBadRequest, err.Error())
	}
	if n := req.Targets(); n > p.MaxPublishTargets {
		return refuse(w, r, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("too many publish targets: %d distinct userIds, max_publish_targets is %d", n, p.MaxPublishTargets))
	}
	// A broker that does not answer must not hang the publisher.
	ctx, cancel := context.WithTimeout(r.Context(), publishTimeout)
	defer cancel()
	res, err := p.ref.hub().Publish(ctx, req)
	if err != nil {
		if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, push.ErrClosed) || errors.Is(err, context.DeadlineExceeded) {
			// The id lets the publisher retry without duplicates; when the
			// broker may have stored the message, a retry is what makes sure.
			return refuseWith(w, r, http.StatusServiceUnavailable, err.Error(), struct {
				Error       string `json:"error"`
				ID          string `json:"id,omitempty"`
				MaybeStored bool   `json:"maybe_stored"`
			}{err.Error(), res.ID, errors.Is(err, broker.ErrMaybeStored)})
		}
		p.logger.Error("publishing", zap.Error(err))
		return refuse(w, r, http.StatusInternalServerError, "publishing failed")
	}
	out := struct {
		push.PublishResult
		Scope string `json:"scope,omitempty"`
	}{PublishResult: res}
	if p.ref.multiNode() {
		out.Scope = "node"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
	return nil
}

// publishTimeout bounds the broker's part of one publish.
const publishTimeout = 10 * time.Second

func (p *Push) publisherAllowed(r *http.Request) bool {
	if p.PublishAuth == "none" {
		return true
	}
	h := r.Header.Get("Authorization")
	if len(h) <= 7 || !strings.EqualFold(h[:7], "bearer ") {
		return false
	}
	tok := strings.TrimSpace(h[7:])
	if p.publishKey != nil && subtle.ConstantTimeCompare([]byte(tok), p.publishKey) == 1 {
		return true
	}
	if p.pubVerifier != nil {
		if _, err := p.pubVerifier.Verify(r.Context(), tok); err == nil {
			return true
		}
	}
	return false
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Push)(nil)
	_ caddy.Validator             = (*Push)(nil)
	_ caddy.CleanerUpper          = (*Push)(nil)
	_ caddyhttp.MiddlewareHandler = (*Push)(nil)
)
