package caddyws

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Tunnel is the websocket_tunnel handler. (Stub: to be written.)
type Tunnel struct{}

// CaddyModule returns the Caddy module information.
func (Tunnel) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.websocket_tunnel",
		New: func() caddy.Module { return new(Tunnel) },
	}
}

func (t *Tunnel) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

func parseTunnelCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	return new(Tunnel), nil
}
