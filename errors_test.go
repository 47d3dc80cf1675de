package caddyws

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRefusalsGoThroughHandleErrors: a refusal before the upgrade is a
// Caddy error, so a site's handle_errors shapes it; a site without
// handle_errors gets the JSON body. Headers the refusal set stay.
func TestRefusalsGoThroughHandleErrors(t *testing.T) {
	echo := tcpEcho(t)
	tc, plain := pushCaddy(t, `
http://localhost:@HTTP@ {
	handle_errors {
		respond "custom {err.status_code}"
	}
	route /push {
		websocket_push {
			auth token_is_user
			publish_key k
		}
	}
	websocket_tunnel /tunnel `+echo+`
}
http://127.0.0.1:@HTTP@ {
	route /push {
		websocket_push {
			auth token_is_user
			publish_key k
		}
	}
}
http://localhost:@EXTRA@ {
	route /push {
		websocket_push {
			auth token_is_user
			publish_key k
		}
	}
	websocket_tunnel /tunnel `+echo+`
}
`)
	plainURL := func(path string) string { return fmt.Sprintf("http://localhost:%d%s", plain, path) }
	publish := func(url string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"broadcast":true,"message":1}`))
		return req
	}
	tunnelFromElsewhere := func(url string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.Header.Set("Origin", "https://elsewhere.example")
		return req
	}
	for _, tt := range []struct {
		name       string
		req        *http.Request
		status     int
		body       string
		header     string // a header the refusal sets, which must survive
		headerWant string
	}{
		{"push 401 through handle_errors", publish(tc.URL("/push")), 401, "custom 401", "WWW-Authenticate", `Bearer realm="websocket_push"`},
		{"push 405 through handle_errors", func() *http.Request { r, _ := http.NewRequest(http.MethodGet, tc.URL("/push"), nil); return r }(), 405, "custom 405", "Allow", "POST"},
		{"tunnel 403 through handle_errors", tunnelFromElsewhere(tc.URL("/tunnel")), 403, "custom 403", "", ""},
		// Caddy runs a server's error routes for every site on it; one
		// that none matches gets the status alone.
		{"push 401, other site on a server with handle_errors", publish(fmt.Sprintf("http://127.0.0.1:%d/push", tc.HTTPPort)), 401, "", "WWW-Authenticate", `Bearer realm="websocket_push"`},
		{"push 401 default JSON", publish(plainURL("/push")), 401, `{"error":"publisher not authenticated"}`, "WWW-Authenticate", `Bearer realm="websocket_push"`},
		{"tunnel 403 default JSON", tunnelFromElsewhere(plainURL("/tunnel")), 403, `{"error":"origin not allowed"}`, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if got := strings.TrimSpace(string(b)); resp.StatusCode != tt.status || got != tt.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, got, tt.status, tt.body)
			}
			if tt.header != "" && resp.Header.Get(tt.header) != tt.headerWant {
				t.Fatalf("%s: %q, want %q", tt.header, resp.Header.Get(tt.header), tt.headerWant)
			}
		})
	}
}
