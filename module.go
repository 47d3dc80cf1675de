// Package caddyws gives Caddy two HTTP handler directives:
//
//   - websocket_tunnel: browsers reach plain TCP services (VNC, SSH, game
//     servers) through a WebSocket, like novnc/websockify.
//   - websocket_push: authenticated real-time push; browsers subscribe over a
//     WebSocket, backends publish with an HTTP POST.
//
// This file registers both and holds what both handlers share: the hijack
// adapter gorilla needs on Caddy >= 2.11.5, the origin check, and refusals.
package caddyws

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Tunnel{})
	caddy.RegisterModule(Push{})
	httpcaddyfile.RegisterHandlerDirective("websocket_tunnel", parseTunnelCaddyfile)
	httpcaddyfile.RegisterHandlerDirective("websocket_push", parsePushCaddyfile)
	// After the auth directives (so identities are known) and before
	// respond/file_server, which get every request that is not ours.
	httpcaddyfile.RegisterDirectiveOrder("websocket_tunnel", httpcaddyfile.After, "encode")
	httpcaddyfile.RegisterDirectiveOrder("websocket_push", httpcaddyfile.After, "encode")
}

// hijacker lets gorilla's Upgrader hijack a Caddy ResponseWriter: since
// Caddy 2.11.5 the writer handed to handlers is wrapped and no longer asserts
// to http.Hijacker, so the hijack goes through http.ResponseController, which
// unwraps it (the same way reverse_proxy does).
type hijacker struct {
	http.ResponseWriter
}

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(h.ResponseWriter).Hijack()
}

// isExtendedConnect reports a WebSocket over HTTP/2 (RFC 8441) or HTTP/3
// (RFC 9220) extended CONNECT, which gorilla cannot serve: Go's HTTP/2 server
// passes the :protocol pseudo-header in the header map, quic-go sets Proto.
func isExtendedConnect(r *http.Request) bool {
	if r.Method != http.MethodConnect {
		return false
	}
	return strings.EqualFold(r.Header.Get(":protocol"), "websocket") ||
		strings.EqualFold(r.Proto, "websocket")
}

// originAllowed implements the origin policy both directives share. A request
// without Origin is not from a browser and is allowed (browsers always send
// it on WebSocket handshakes). With an empty allow-list only the request's own
// host is accepted (same origin). Entries are full origins
// ("https://app.example.com"), host patterns with a leading wildcard label
// ("https://*.example.com"), or "*" for any origin.
func originAllowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(allowed) == 0 {
		return strings.EqualFold(u.Host, r.Host)
	}
	for _, a := range allowed {
		if a == "*" || strings.EqualFold(a, origin) {
			return true
		}
		if strings.Contains(a, "*") {
			if ok, _ := path.Match(strings.ToLower(a), strings.ToLower(origin)); ok {
				return true
			}
		}
	}
	return false
}

// refuse answers a request refused before any upgrade. When the request's
// server has error routes (handle_errors), the refusal is returned to Caddy
// as a caddyhttp.HandlerError, so the site shapes the answer with
// {err.status_code} and {err.message}; headers set before (Allow,
// WWW-Authenticate) stay. Otherwise it is answered here with the status and
// a small JSON body, {"error": "..."}: Caddy's own answer to a returned
// error has an empty body, and the clients of these endpoints (scripts,
// backends, browser code) need the reason.
func refuse(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	return refuseWith(w, r, status, msg, map[string]string{"error": msg})
}

// refuseWith is refuse with a JSON body of more fields than the message
// (body must hold it as "error").
func refuseWith(w http.ResponseWriter, r *http.Request, status int, msg string, body any) error {
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return caddyhttp.Error(status, errors.New(msg))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
	return nil
}
