package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// startDemo runs the README's demo, Caddyfile.example itself, with its fixed
// ports (8443, 9001, 9002) moved to free ones and the test's admin address,
// storage and loopback binding added to its global options.
func startDemo(t *testing.T) (*caddyProc, int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	var tcpPort int
	cp := launchCaddy(t, func(cp *caddyProc) string {
		cfg := string(b)
		tcpPort = freePort(t)
		for old, port := range map[string]int{"8443": cp.HTTPSPort, "9001": tcpPort, "9002": freePort(t)} {
			if !strings.Contains(cfg, old) {
				t.Fatalf("Caddyfile.example no longer mentions port %s: update this test", old)
			}
			cfg = strings.ReplaceAll(cfg, old, fmt.Sprint(port))
		}
		i := strings.Index(cfg, "\n{\n")
		if i < 0 {
			t.Fatal("Caddyfile.example has no global options block")
		}
		return cfg[:i+3] + cp.Expand(`	admin 127.0.0.1:@ADMIN@
	persist_config off
	http_port @HTTP@
	default_bind 127.0.0.1
	storage file_system @STORAGE@
	grace_period 1s
`, nil) + cfg[i+3:]
	})
	return cp, tcpPort
}

// TestDemoShowsBothDirectivesWorking opens the demo page of
// Caddyfile.example in Chromium, as a newcomer would after the README's first
// command, and checks what they must see without doing anything: the push
// feed connected and showing the page's own greeting, the same feed through
// reverse_proxy, and the tunnel panel showing the raw HTTP response of the
// TCP service. Then it publishes with the form and as a backend with the key,
// and checks that the unauthenticated ways in stay closed.
func TestDemoShowsBothDirectivesWorking(t *testing.T) {
	b := newBrowser(t)
	cp, _ := startDemo(t)
	if err := b.run(30*time.Second, navigate(cp.URL("/"))); err != nil {
		t.Fatalf("opening the demo: %v", err)
	}
	const describe = `JSON.stringify({push: document.getElementById('push-status').textContent,
		tunnel: document.getElementById('tunnel-status').textContent, proxy: document.getElementById('proxy-status').textContent,
		feed: document.getElementById('feed').innerText, proxied: document.getElementById('proxy-feed').innerText,
		out: document.getElementById('tunnel-output').textContent, result: document.getElementById('publish-result').textContent,
		lifecycle: window.demo && demo.lifecycle})`
	feedHas := func(list, text string) string {
		return fmt.Sprintf(`Array.from(document.querySelectorAll('#%s li .text'), e => e.textContent).some(s => s.includes(%q))`, list, text)
	}

	// Within seconds, without a click: push connected and delivering (the
	// page greets itself), reverse_proxy delivering the same, tunnel bytes back.
	b.poll(15*time.Second, `document.getElementById('push-status').dataset.state === 'open'`, describe)
	b.poll(10*time.Second, feedHas("feed", "a new tab joined"), describe)
	b.poll(10*time.Second, feedHas("proxy-feed", "a new tab joined"), describe)
	b.poll(10*time.Second, `demo.tunnel.closeCode === 1000 && demo.tunnel.text.startsWith('HTTP/1.1 200 OK\r\n') &&
		demo.tunnel.text.includes('These bytes came back through websocket_tunnel.')`, describe)
	sent, err := eval[int](b, 5*time.Second, `demo.tunnel.sent`)
	if err != nil || sent < 40 {
		t.Fatalf("tunnel sent %d bytes (%v)", sent, err)
	}

	// The form publishes (through the guarded same-origin route).
	if err := b.run(10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#publish-text"), "typed in the form"),
		chromedp.Click(chromedp.CSS("#publish-form button[type=submit]")),
	); err != nil {
		t.Fatalf("using the form: %v", err)
	}
	b.poll(10*time.Second, feedHas("feed", "typed in the form"), describe)
	b.poll(10*time.Second, feedHas("proxy-feed", "typed in the form"), describe)
	b.poll(5*time.Second, `document.getElementById('publish-result').textContent.startsWith('published ')`, describe)

	// A backend publishes with the demo key.
	client := cp.HTTPClient()
	post := func(path, origin, key, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, cp.URL(path), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		rb, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(rb)
	}
	if code, body := post("/push/publish", "", "caddyws-demo-key", `{"event":"demo","message":"from a backend"}`); code != 200 {
		t.Fatalf("backend publish with the demo key: %d %s", code, body)
	}
	b.poll(10*time.Second, feedHas("feed", "from a backend"), describe)

	// "Go offline for 5 s", publish meanwhile: the message reaches the
	// proxied feed at once, and this tab's feed after it reconnects, through
	// recovery from history, exactly once.
	if err := b.run(10*time.Second, chromedp.Click(chromedp.CSS("#push-offline"))); err != nil {
		t.Fatalf("clicking offline: %v", err)
	}
	b.poll(5*time.Second, `document.getElementById('push-status').textContent.startsWith('offline')`, describe)
	if code, body := post("/push/publish", "", "caddyws-demo-key", `{"event":"demo","message":"while offline"}`); code != 200 {
		t.Fatalf("backend publish: %d %s", code, body)
	}
	b.poll(5*time.Second, feedHas("proxy-feed", "while offline"), describe)
	if ok, _ := eval[bool](b, 5*time.Second, feedHas("feed", "while offline")); ok {
		t.Fatal("the offline tab received a message while offline: the test did not test recovery")
	}
	b.poll(15*time.Second, feedHas("feed", "while offline"), describe)
	b.poll(5*time.Second, feedHas("feed", "recovered event:demo"), describe)
	b.poll(5*time.Second, `Array.from(document.querySelectorAll('#feed li .text'), e => e.textContent).filter(s => s === 'while offline').length === 1`, describe)

	// Publishing stays closed to everyone else.
	if code, body := post("/push/publish", "", "", `{"event":"demo","message":"no key"}`); code != http.StatusUnauthorized {
		t.Errorf("publish without the key: %d %s, want 401", code, body)
	}
	if code, body := post("/push/publish", "", "wrong", `{"event":"demo","message":"bad key"}`); code != http.StatusUnauthorized {
		t.Errorf("publish with a wrong key: %d %s, want 401", code, body)
	}
	if code, body := post("/demo/publish", "https://evil.example", "", `{"event":"demo","message":"csrf"}`); code == http.StatusOK {
		t.Errorf("the form route accepted a foreign Origin: %d %s", code, body)
	}
	if code, body := post("/demo/publish", "", "", `{"event":"demo","message":"no origin"}`); code == http.StatusOK {
		t.Errorf("the form route accepted a request without Origin: %d %s", code, body)
	}
	if code, body := post("/demo/publish", cp.URL(""), "", `{"event":"demo","message":"same origin from a script"}`); code != http.StatusOK {
		t.Errorf("the form route refused its own origin: %d %s", code, body)
	}

	time.Sleep(300 * time.Millisecond)
	for _, bad := range []string{"no key", "bad key", "csrf", "no origin"} {
		if ok, _ := eval[bool](b, 5*time.Second, feedHas("feed", bad)); ok {
			t.Errorf("a refused publish (%q) reached the feed", bad)
		}
	}
	b.screenshot("demo.png")
}
