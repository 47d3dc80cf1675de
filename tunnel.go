package caddyws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/internal/tunnel"
)

// Tunnel is the websocket_tunnel handler: it upgrades WebSocket requests and
// relays their bytes to a TCP or unix socket, like novnc/websockify. Other
// requests go to the next handler, so file_server can serve the web client
// on the same site.
//
// The target comes from exactly one of upstream (fixed, or built from
// placeholders), targets (a websockify token file) or jwt_key (a signed
// ticket naming it). Every refusal happens before the upgrade: 403 for a
// foreign origin or a target outside the allow-list, 401 for a bad or
// expired ticket, 400 for an unsupported subprotocol or a missing token,
// 503 over max_connections. It is a Caddy error, so handle_errors can shape
// it; without handle_errors the body is {"error": "..."}.
type Tunnel struct {
	// Upstream is the fixed target: "host:port" or "unix/<path>". It may
	// contain placeholders, e.g. "127.0.0.1:{http.request.uri.query.port}";
	// the resulting target must then be in Allow (which is required).
	Upstream string `json:"upstream,omitempty"`

	// Targets is a websockify token file ("token: host:port" lines, # for
	// comments), or a directory of them. It is re-read when it changes, so
	// tokens can be added without a reload.
	Targets string `json:"targets,omitempty"`

	// TokenParam is the query parameter that carries the token (for Targets)
	// or the ticket (for JWTKey). When the request has no such parameter, the
	// last segment of the path is used, so "/vnc/<token>" works too.
	// Default: token.
	TokenParam string `json:"token_param,omitempty"`

	// JWTKey verifies signed tickets that name their target (claims "host"
	// and "port", as websockify's JWT plugin reads them, or "target"), and
	// must carry "exp"; a ticket with "jti" is single-use, spent only once
	// its tunnel is established (a 403, 503 or failed dial leaves it
	// valid). A file holding a
	// PEM public key or certificate (RSA of 2048 bits or more, EC P-256/384/
	// 521, Ed25519) or a shared secret of at least 32 bytes (surrounding
	// white space trimmed). Private keys, JSON Web Keys and SSH keys are
	// refused when the config loads. When the value contains a placeholder
	// such as {env.TUNNEL_JWT_KEY}, the replaced value is the key itself,
	// not a path. Default: none.
	JWTKey string `json:"jwt_key,omitempty"`

	// JWTAlg, when set, is the only algorithm tickets may be signed with;
	// it must agree with JWTKey. Default: what the key allows (RSA: RS* and
	// PS*; EC: the ES* of its curve; Ed25519: EdDSA; a secret: HS256, and
	// HS384/HS512 when it is 48/64 bytes or longer).
	JWTAlg string `json:"jwt_alg,omitempty"`

	// Allow lists the targets that a token file, a ticket or a placeholder
	// upstream may name: "<cidr>[:<ports>]", "<ip>[:<ports>]",
	// "<host>[:<ports>]" ("*.example.com" for subdomains), "[<v6cidr>]:<ports>"
	// or "unix/<path>"; ports are "5900", "5900-5999" or a comma list. A host
	// name target not listed by name must resolve only to allowed addresses,
	// and the checked address is dialled. A fixed upstream is not checked.
	// Default: none (required with a placeholder upstream; with targets or
	// jwt_key, an empty list allows every target they name).
	Allow []string `json:"allow,omitempty"`

	// Subprotocols are the Sec-WebSocket-Protocol values accepted, all
	// meaning raw bytes. A client that offers none gets plain binary frames;
	// one that offers only others (e.g. websockify's retired "base64") gets
	// 400. Default: [binary].
	Subprotocols []string `json:"subprotocols,omitempty"`

	// Origins lists the Origin values accepted: full origins
	// ("https://app.example.com"), patterns ("https://*.example.com") or
	// "*". Requests without Origin (non-browser clients) are accepted.
	// Default: the request's own host only (same origin).
	Origins []string `json:"origins,omitempty"`

	// DialTimeout bounds connecting to the upstream. Default: 10s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// IdleTimeout closes a tunnel (code 4408) when no byte moved either way
	// for this long. Default: 0 (never).
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// WriteTimeout bounds one write to the client (one frame, at most
	// buffer_size bytes): a client that accepts no data for this long, for
	// instance one that stopped reading while the upstream keeps sending,
	// ends the tunnel; the WebSocket and the upstream connection are closed
	// (logged with close code 1006, reason "client write timeout"). The
	// same name and meaning as websocket_push's write_timeout.
	// Default: 10s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`

	// MaxConnections caps the open tunnels of this handler; more get 503.
	// Tunnels kept across a reload still count. Default: 0 (no limit).
	MaxConnections int `json:"max_connections,omitempty"`

	// BufferSize is the read size on each leg in bytes: the largest frame
	// sent to the client and the most client data gathered into one upstream
	// write. Default: 65536.
	BufferSize int `json:"buffer_size,omitempty"`

	// Exec runs a program per connection as the upstream instead of a
	// socket (see ExecUpstream and docs/exec.md); exclusive with upstream,
	// targets and jwt_key. Default: none.
	Exec *ExecUpstream `json:"upstream_exec,omitempty"`

	// CloseDelay decides what a config reload does to the tunnels this
	// handler opened: unset keeps them until they end by themselves (a VNC
	// or SSH session survives `caddy reload`); a duration closes them with
	// 1001 that long after the config is unloaded (0s: at once). Stopping
	// Caddy always closes every tunnel with 1001. Default: unset (keep).
	CloseDelay *caddy.Duration `json:"close_delay,omitempty"`

	logger    *zap.Logger
	static    *tunnel.Target
	dynamic   bool
	allow     *tunnel.AllowList
	tokens    *tunnel.TokenFile
	tickets   *tunnel.TicketVerifier
	upgrader  *websocket.Upgrader
	counter   *connCounter
	counterID string
	ticketsID string
}

// CaddyModule returns the Caddy module information.
func (Tunnel) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.websocket_tunnel",
		New: func() caddy.Module { return new(Tunnel) },
	}
}

// Provision prepares the target source and registers the metrics.
func (t *Tunnel) Provision(ctx caddy.Context) error {
	t.logger = ctx.Logger()
	if err := registerTunnelMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if t.TokenParam == "" {
		t.TokenParam = "token"
	}
	if len(t.Subprotocols) == 0 {
		t.Subprotocols = []string{"binary"}
	}
	if t.DialTimeout == 0 {
		t.DialTimeout = caddy.Duration(10 * time.Second)
	}
	if t.BufferSize == 0 {
		t.BufferSize = tunnel.DefaultBufferSize
	}
	if t.WriteTimeout == 0 {
		t.WriteTimeout = caddy.Duration(tunnel.DefaultWriteTimeout)
	}
	if t.Exec != nil {
		if err := t.Exec.provision(); err != nil {
			return err
		}
	}
	var err error
	if t.allow, err = tunnel.ParseAllowList(t.Allow); err != nil {
		return err
	}
	switch {
	case t.Upstream != "" && strings.Contains(t.Upstream, "{"):
		t.dynamic = true
	case t.Upstream != "":
		target, err := tunnel.ParseTarget(t.Upstream)
		if err != nil {
			return fmt.Errorf("upstream: %w", err)
		}
		t.static = &target
	}
	if t.Targets != "" {
		logger := t.logger
		t.tokens, err = tunnel.OpenTokenFile(t.Targets, func(err error) {
			logger.Error("token file not reloaded; keeping the last good one", zap.Error(err))
		})
		if err != nil {
			return err
		}
	}
	if t.JWTKey != "" {
		material, source, err := t.jwtKeyMaterial()
		if err != nil {
			return err
		}
		if t.ticketsID, t.tickets, err = acquireTicketVerifier(material, t.JWTAlg, source); err != nil {
			return err
		}
	}
	t.upgrader = &websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// tunnel.Accept sets the client reader (buffer_size bytes).
		WriteBufferSize: 4096,
		WriteBufferPool: writeBufferPool,
		Subprotocols:    t.Subprotocols,
		// Origins are checked before the upgrade, with a JSON 403.
		CheckOrigin:       func(*http.Request) bool { return true },
		EnableCompression: false, // bytes are usually compressed or binary already (VNC, SSH)
	}
	t.counterID, t.counter = acquireCounter(t)
	registerExitHook()
	return nil
}

// writeBufferPool is shared by every tunnel: gorilla takes a write buffer
// only while a frame is being written, so idle tunnels hold none.
var writeBufferPool = &sync.Pool{}

// jwtKeyMaterial returns the key and the name errors give it.
func (t *Tunnel) jwtKeyMaterial() ([]byte, string, error) {
	if strings.Contains(t.JWTKey, "{") {
		v := caddy.NewReplacer().ReplaceKnown(t.JWTKey, "")
		if v == "" {
			return nil, "", fmt.Errorf("jwt_key %s: empty after replacing placeholders", t.JWTKey)
		}
		return []byte(v), "value of " + t.JWTKey, nil
	}
	b, err := os.ReadFile(t.JWTKey)
	if err != nil {
		return nil, "", fmt.Errorf("reading jwt_key: %w", err)
	}
	return b, fmt.Sprintf("file %q", t.JWTKey), nil
}

// Validate checks that the config names exactly one target source and that
// dynamic upstreams are held to an allow-list.
func (t *Tunnel) Validate() error {
	n := 0
	for _, set := range []bool{t.Upstream != "", t.Targets != "", t.JWTKey != "", t.Exec != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("websocket_tunnel needs exactly one of upstream, targets, jwt_key or exec")
	}
	if t.JWTAlg != "" && t.JWTKey == "" {
		return errors.New("jwt_alg needs jwt_key")
	}
	if t.dynamic && t.allow.Empty() {
		return errors.New("an upstream with placeholders needs an allow list: the client chooses the target")
	}
	if t.MaxConnections < 0 || t.BufferSize < 0 || t.DialTimeout < 0 || t.IdleTimeout < 0 || t.WriteTimeout < 0 {
		return errors.New("max_connections, buffer_size, dial_timeout, idle_timeout and write_timeout cannot be negative")
	}
	if t.CloseDelay != nil && *t.CloseDelay < 0 {
		return errors.New("close_delay cannot be negative")
	}
	return nil
}

// ServeHTTP refuses what it must before the upgrade, then upgrades, dials
// and relays until the tunnel ends.
func (t *Tunnel) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if isExtendedConnect(r) {
		return refuse(w, r, http.StatusNotImplemented, "websocket_tunnel serves WebSockets over HTTP/1.1 only, not over HTTP/2 or HTTP/3 extended CONNECT")
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return next.ServeHTTP(w, r)
	}
	if !originAllowed(r, t.Origins) {
		return t.refuse(w, r, http.StatusForbidden, resultRefusedOrigin, "origin not allowed")
	}
	if offered := websocket.Subprotocols(r); len(offered) > 0 && !slices.ContainsFunc(offered, func(p string) bool { return slices.Contains(t.Subprotocols, p) }) {
		return t.refuse(w, r, http.StatusBadRequest, resultBadRequest,
			fmt.Sprintf("unsupported subprotocol %q; this tunnel speaks %q", strings.Join(offered, ", "), strings.Join(t.Subprotocols, ", ")))
	}
	if t.Exec != nil {
		return t.serveExec(w, r)
	}
	target, ticket, status, err := t.resolve(r)
	// A single-use ticket is spent only once the tunnel is established
	// (relay commits it after the dial); any refusal before gives it back.
	defer ticket.Release()
	if err != nil {
		result := resultRefusedTarget
		switch status {
		case http.StatusUnauthorized:
			result = resultUnauthorized
		case http.StatusBadRequest:
			result = resultBadRequest
		}
		if c := t.logger.Check(zap.DebugLevel, "tunnel target refused"); c != nil {
			c.Write(zap.String("client", r.RemoteAddr), zap.Error(err))
		}
		return t.refuse(w, r, status, result, err.Error())
	}
	if !t.counter.acquire(t.MaxConnections) {
		return t.refuse(w, r, http.StatusServiceUnavailable, resultOverLimit, "too many tunnels")
	}
	defer t.counter.release()
	t.relay(w, r, target, ticket)
	return nil
}

func (t *Tunnel) refuse(w http.ResponseWriter, r *http.Request, status int, result, msg string) error {
	kind := upstreamSocket
	if t.Exec != nil {
		kind = upstreamExec
	}
	tunnelsTotal.WithLabelValues(result, kind).Inc()
	return refuse(w, r, status, msg)
}

// resolve finds the request's target and the status that refuses it. A
// single-use ticket comes back reserved, for the caller to commit or
// release.
func (t *Tunnel) resolve(r *http.Request) (tunnel.Target, *tunnel.Reservation, int, error) {
	switch {
	case t.static != nil:
		return *t.static, nil, 0, nil
	case t.dynamic:
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		addr := repl.ReplaceAll(t.Upstream, "")
		target, err := tunnel.ParseTarget(addr)
		if err != nil {
			return target, nil, http.StatusForbidden, fmt.Errorf("target refused: %w", err)
		}
		target, status, err := t.checkAllowed(r, target)
		return target, nil, status, err
	}
	token := r.URL.Query().Get(t.TokenParam)
	if token == "" {
		token = lastPathSegment(r.URL.Path)
	}
	if token == "" {
		return tunnel.Target{}, nil, http.StatusBadRequest, fmt.Errorf("missing %s (query parameter or last path segment)", t.TokenParam)
	}
	var target tunnel.Target
	var ticket *tunnel.Reservation
	var err error
	if t.tickets != nil {
		if target, ticket, err = t.tickets.Reserve(token); err != nil {
			return target, nil, http.StatusUnauthorized, err
		}
	} else if target, err = t.tokens.Lookup(token); err != nil {
		return target, nil, http.StatusForbidden, fmt.Errorf("target refused: %w", err)
	}
	if t.allow.Empty() {
		return target, ticket, 0, nil
	}
	target, status, err := t.checkAllowed(r, target)
	return target, ticket, status, err
}

func (t *Tunnel) checkAllowed(r *http.Request, target tunnel.Target) (tunnel.Target, int, error) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(t.DialTimeout))
	defer cancel()
	checked, err := t.allow.Check(ctx, net.DefaultResolver, target)
	if err != nil {
		return target, http.StatusForbidden, fmt.Errorf("target refused: %w", err)
	}
	return checked, 0, nil
}

// lastPathSegment is what follows the last slash ("" for "/vnc/").
func lastPathSegment(p string) string {
	return p[strings.LastIndexByte(p, '/')+1:]
}

// relay upgrades, dials and runs the tunnel, then logs and counts it. The
// ticket is spent when the dial succeeded.
func (t *Tunnel) relay(w http.ResponseWriter, r *http.Request, target tunnel.Target, ticket *tunnel.Reservation) {
	s, err := tunnel.Accept(w, r, t.upgrader, tunnel.Options{
		BufferSize:   t.BufferSize,
		IdleTimeout:  time.Duration(t.IdleTimeout),
		WriteTimeout: time.Duration(t.WriteTimeout),
	})
	if err != nil {
		// gorilla has answered the request (or the hijack failed).
		tunnelsTotal.WithLabelValues(resultUpgradeFailed, upstreamSocket).Inc()
		if c := t.logger.Check(zap.DebugLevel, "websocket upgrade failed"); c != nil {
			c.Write(zap.String("client", r.RemoteAddr), zap.Error(err))
		}
		return
	}
	tunnelsActive.WithLabelValues(upstreamSocket).Inc()
	defer tunnelsActive.WithLabelValues(upstreamSocket).Dec()
	unregister := sessions.add(s, t)
	defer unregister()

	start := time.Now()
	d := net.Dialer{Timeout: time.Duration(t.DialTimeout)}
	up, err := d.Dial(target.Network, target.Address())
	tunnelDial.Observe(time.Since(start).Seconds())
	var res tunnel.Result
	if err != nil {
		// Given back before the client hears of the failure, so that
		// its retry finds the ticket valid.
		ticket.Release()
		res = s.Fail(tunnel.CloseUnreachable, dialReason(err))
		tunnelsTotal.WithLabelValues(resultDialFailed, upstreamSocket).Inc()
	} else {
		ticket.Commit()
		res = s.Run(up)
		tunnelsTotal.WithLabelValues(resultClosedBy+res.EndedBy, upstreamSocket).Inc()
	}
	tunnelBytes.WithLabelValues(directionUp, upstreamSocket).Add(float64(res.BytesUp))
	tunnelBytes.WithLabelValues(directionDown, upstreamSocket).Add(float64(res.BytesDown))
	t.logger.Info("tunnel closed",
		zap.String("client", r.RemoteAddr),
		zap.String("upstream", target.String()),
		zap.String("subprotocol", s.Subprotocol()),
		zap.Int64("bytes_up", res.BytesUp),
		zap.Int64("bytes_down", res.BytesDown),
		zap.Duration("duration", res.Duration),
		zap.Int("close_code", res.Code),
		zap.String("close_reason", res.Reason),
		zap.String("ended_by", res.EndedBy),
	)
}

// dialReason is the close reason sent to the client when the upstream
// cannot be reached: short (a close frame holds 123 bytes) and without the
// upstream's address, which the client may not be meant to know.
func dialReason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "upstream unreachable: dial timeout"
	case errors.Is(err, errConnRefused):
		return "upstream unreachable: connection refused"
	default:
		return "upstream unreachable"
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Tunnel)(nil)
	_ caddy.Validator             = (*Tunnel)(nil)
	_ caddy.CleanerUpper          = (*Tunnel)(nil)
	_ caddyhttp.MiddlewareHandler = (*Tunnel)(nil)
)
