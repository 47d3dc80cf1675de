package caddyws

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// adaptPush adapts a site with the given websocket_push block.
func adaptPush(t *testing.T, block string) (string, error) {
	t.Helper()
	src := "http://localhost:8080 {\n" + block + "\n}\n"
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	return string(cfg), err
}

func TestPushCaddyfileGood(t *testing.T) {
	cfg, err := adaptPush(t, `	websocket_push /ws {
		hub chat
		auth jwt {
			alg RS256
			key_file /etc/keys/pub.pem
			user_claim uid
			events_claim ev
			issuer me
			audience you
			leeway 10s
			require role user
		}
		token_param t
		publish_key {env.PUSH_KEY}
		origins https://app.example.com https://*.example.org
		max_frame_size 8KiB
		max_events 20
		max_body_size 2MiB
		max_connections 5000
		max_connections_per_user 4
		queue_size 64
		ping_interval 20s
		pong_timeout 5s
		write_timeout 3s
		auth_timeout 4s
		history 100 5m
		broker memory
	}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"handler":"websocket_push"`, `"hub":"chat"`, `"mode":"jwt"`, `"alg":"RS256"`,
		`"key_file":"/etc/keys/pub.pem"`, `"user_claim":"uid"`, `"require":{"role":"user"}`,
		`"token_param":"t"`, `"publish_key":"{env.PUSH_KEY}"`, `"max_frame_size":8192`,
		`"max_body_size":2097152`, `"max_connections_per_user":4`, `"ping_interval":20000000000`,
		`"history":{"size":100,"ttl":300000000000}`, `"broker":{"type":"memory"}`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("adapted JSON lacks %s:\n%s", want, cfg)
		}
	}
	var v any
	if err := json.Unmarshal([]byte(cfg), &v); err != nil {
		t.Fatal(err)
	}
	for _, block := range []string{
		"websocket_push {\n auth token_is_user\n}",
		"websocket_push {\n auth token_file /tmp/tokens\n}",
		"websocket_push {\n auth callback http://127.0.0.1:9/auth {\n method GET\n header X-Key abc\n timeout 2s\n cache_ttl 1m\n }\n}",
		"websocket_push {\n auth caddy {http.auth.user.id}\n}",
		"websocket_push {\n auth anonymous\n}",
		"websocket_push {\n publish_auth none\n}",
		"websocket_push {\n publish_jwt {\n key abc\n require role publisher\n }\n}",
	} {
		if _, err := adaptPush(t, block); err != nil {
			t.Errorf("%q: %v", block, err)
		}
	}
}

func TestPushCaddyfileBad(t *testing.T) {
	for _, c := range []struct{ block, want string }{
		{"websocket_push {\n auth token_is_user\n hub a\n hub b\n}", "Caddyfile:5"},
		{"websocket_push {\n auth nope\n}", "Caddyfile:3"},
		{"websocket_push {\n auth jwt {\n alg HS256\n }\n}", "Caddyfile:"},
		{"websocket_push {\n auth jwt {\n key a\n key_file b\n }\n}", "Caddyfile:"},
		{"websocket_push {\n auth jwt {\n bogus 1\n }\n}", "Caddyfile:4"},
		{"websocket_push {\n auth token_is_user extra\n}", "Caddyfile:3"},
		{"websocket_push {\n publish_auth open\n}", "Caddyfile:3"},
		{"websocket_push {\n max_events -1\n}", "Caddyfile:3"},
		{"websocket_push {\n max_frame_size lots\n}", "Caddyfile:3"},
		{"websocket_push {\n ping_interval soon\n}", "Caddyfile:3"},
		{"websocket_push {\n history x\n}", "Caddyfile:3"},
		{"websocket_push {\n history 10 1m extra\n}", "Caddyfile:3"},
		{"websocket_push {\n broker carrier-pigeon\n}", "Caddyfile:3"},
		{"websocket_push {\n broker memory extra\n}", "Caddyfile:3"},
		{"websocket_push {\n frobnicate\n}", "Caddyfile:3"},
		{"websocket_push {\n origins\n}", "Caddyfile:3"},
		{"websocket_push {\n token_param t\n}", "Caddyfile:3"},
		{"websocket_push extra {\n auth anonymous\n}", "Caddyfile:2"},
	} {
		_, err := adaptPush(t, c.block)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error at %s", c.block, err, c.want)
		}
	}
}

// TestPushConfigErrors: what only Provision can refuse.
func TestPushConfigErrors(t *testing.T) {
	for _, c := range []struct{ sites, want string }{
		{`http://localhost:@HTTP@ {
	websocket_push {
		max_events 3
	}
}`, "set auth"},
		{`http://localhost:@HTTP@ {
	websocket_push /a {
		hub h
		auth anonymous
		queue_size 10
	}
	websocket_push /b {
		hub h
		publish_auth none
		queue_size 20
	}
}`, "queue_size is set differently"},
		{`http://localhost:@HTTP@ {
	websocket_push {
		auth anonymous
		publish_key {env.CADDYWS_TEST_UNSET_VARIABLE}
	}
}`, "publish_key is empty"},
		{`http://localhost:@HTTP@ {
	websocket_push {
		auth jwt {
			key short
		}
	}
}`, "jwt"},
		{`http://localhost:@HTTP@ {
	websocket_push {
		auth token_file /nonexistent/tokens
	}
}`, "token file"},
		{`http://localhost:@HTTP@ {
	websocket_push {
		auth anonymous
		ping_interval 90s
	}
}`, "ping_interval"},
	} {
		tc := &testCaddy{t: t, HTTPPort: freePort(t), HTTPSPort: freePort(t), AdminPort: freePort(t)}
		err := tc.load(c.sites)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error containing %q", err, c.want)
		}
	}
}
