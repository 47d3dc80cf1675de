package caddyws

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestPushCaddyfileTransportsAndTokenCookie(t *testing.T) {
	p := new(Push)
	d := caddyfile.NewTestDispenser(`websocket_push {
		auth token_is_user
		token_cookie sess
		transports sse
	}`)
	if err := p.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if p.Auth.TokenCookie != "sess" || len(p.Transports) != 1 || p.Transports[0] != "sse" {
		t.Fatalf("parsed %+v %+v", p.Auth, p.Transports)
	}
	err := new(Push).UnmarshalCaddyfile(caddyfile.NewTestDispenser(`websocket_push {
		auth token_is_user
		transports websocket carrier-pigeon
	}`))
	if err == nil || !strings.Contains(err.Error(), "carrier-pigeon") || !strings.Contains(err.Error(), ":3") {
		t.Fatalf("bad transport: %v", err)
	}
}
