package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pushSite is a push setup as users deploy it: subscribers at /ws (token
// file: alice and bob), backends publish at /push with a bearer key, history
// on so reconnecting clients recover; /token hands the browser page its token
// (standing in for the app's own session endpoint), /login sets it as the
// HttpOnly token cookie instead (for SSE, where EventSource cannot send a
// header); the client module and a test page are served from the repository.
const pushSite = `
https://localhost:@HTTPS@ {
	tls internal
	route /ws {
		websocket_push {
			hub e2e
			auth token_file @TOKENS@
			history 1000 10m
		}
	}
	route /push {
		websocket_push {
			hub e2e
			auth token_file @TOKENS@
			publish_key ` + pushKey + `
			history 1000 10m
		}
	}
	route /token {
		header Cache-Control no-store
		respond "alice-token"
	}
	route /login {
		header Set-Cookie "caddyws_token=alice-token; Path=/ws; HttpOnly; Secure; SameSite=Strict"
		respond 204
	}
	route /caddyws-push.js {
		root * @ROOT@/client
		file_server
	}
	route {
		root * @ROOT@/integration/e2e/testdata/push-page
		file_server
	}
}
`

const pushKey = "e2e-publish-key"

// blockUpgrades is what a proxy that breaks WebSockets does: every upgrade
// is refused before it reaches websocket_push (inside the route, in order;
// a separate route without a path would be sorted after route /ws).
const blockUpgrades = `
		@upgrade header Upgrade websocket
		respond @upgrade "WebSocket upgrades are blocked here" 403`

// startPush runs Caddy with pushSite.
func startPush(t *testing.T) *caddyProc {
	return startPushSite(t, pushSite)
}

// startPushSite runs Caddy with a variant of pushSite.
func startPushSite(t *testing.T, site string) *caddyProc {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("alice-token: alice\nbob-token: bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startCaddy(t, site, map[string]string{"@TOKENS@": tokens})
}

// pushSiteBlockingUpgrades is pushSite behind blockUpgrades.
func pushSiteBlockingUpgrades() string {
	return strings.Replace(pushSite, "\troute /ws {", "\troute /ws {"+blockUpgrades, 1)
}

// publish POSTs a message as a backend and returns the publish response.
func publish(t *testing.T, cp *caddyProc, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, cp.URL("/push"), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+pushKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := cp.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("publishing %s: %v", body, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publishing %s: %d %s", body, resp.StatusCode, b)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("publish response %q: %v", b, err)
	}
	return out
}

// drop closes a user's connections through Caddy's admin API (4004).
func drop(t *testing.T, cp *caddyProc, user string) {
	t.Helper()
	code, body := cp.Admin(http.MethodPost, "/websocket_push/drop", fmt.Sprintf(`{"hub":"e2e","user":%q}`, user))
	if code != http.StatusOK {
		t.Fatalf("admin drop %s: %d %s", user, code, body)
	}
}
