package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// noVNCRoot is Debian's novnc package (1.3.0 on bookworm).
const noVNCRoot = "/usr/share/novnc"

// TestNoVNCThroughTunnelShowsTheDisplay opens Debian's noVNC in Chromium over
// wss:// (tls internal), through websocket_tunnel to x11vnc on Xvfb, and
// checks that the canvas shows the colour painted on the X display. The same
// page through Debian's websockify behind reverse_proxy is the reference: if
// that one fails too, the rig is broken, not the tunnel.
func TestNoVNCThroughTunnelShowsTheDisplay(t *testing.T) {
	if _, err := os.Stat(noVNCRoot + "/vnc_lite.html"); err != nil {
		t.Fatalf("noVNC not installed at %s (apt-get install novnc): %v", noVNCRoot, err)
	}
	b := newBrowser(t)
	vnc := startVNC(t)

	t.Run("websocket_tunnel", func(t *testing.T) {
		cp := startCaddy(t, `
https://localhost:@HTTPS@ {
	tls internal
	# noVNC's path query parameter names this route (default "websockify").
	route /websockify {
		websocket_tunnel 127.0.0.1:@VNC@
	}
	file_server {
		root @NOVNC@
	}
}
`, map[string]string{"@VNC@": fmt.Sprint(vnc.Port), "@NOVNC@": noVNCRoot})
		checkNoVNC(t, b, cp, vnc, "websockify", "#00ff00", [3]int{0, 255, 0}, "novnc-websocket_tunnel.png")

		// `caddy reload` with a changed config must not cut the running VNC
		// session (caddy#5471): the next repaint still arrives through it.
		cp.Reload(strings.Replace(cp.Config, "tls internal", "tls internal\n\theader X-Reloaded yes", 1))
		vnc.Paint(t, "#0000ff")
		b.poll(15*time.Second, `(() => {
			const c = document.querySelector('#screen canvas');
			const d = c.getContext('2d').getImageData(Math.floor(c.width/2), Math.floor(c.height/2), 1, 1).data;
			return d[0] < 8 && d[1] < 8 && d[2] > 247 && document.getElementById('status').textContent.startsWith('Connected');
		})()`, `document.getElementById('status').textContent`)
		resp, err := cp.HTTPClient().Get(cp.URL("/vnc_lite.html"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Reloaded") != "yes" {
			t.Fatal("the reload did not take effect, so the test proved nothing")
		}
	})

	// How websockify's token plugin is used: noVNC's path carries the token,
	// the token file names the machine.
	t.Run("token_file", func(t *testing.T) {
		tokens := filepath.Join(t.TempDir(), "tokens")
		if err := os.WriteFile(tokens, []byte(fmt.Sprintf("# desk: target\ndesk1: 127.0.0.1:%d\n", vnc.Port)), 0o600); err != nil {
			t.Fatal(err)
		}
		cp := startCaddy(t, `
https://localhost:@HTTPS@ {
	tls internal
	websocket_tunnel /websockify {
		targets @TOKENS@
		allow 127.0.0.1:@VNC@
	}
	file_server {
		root @NOVNC@
	}
}
`, map[string]string{"@TOKENS@": tokens, "@VNC@": fmt.Sprint(vnc.Port), "@NOVNC@": noVNCRoot})
		checkNoVNC(t, b, cp, vnc, "websockify?token=desk1", "#ffff00", [3]int{255, 255, 0}, "novnc-token-file.png")
		checkNoVNCRefused(t, b, cp, "websockify?token=nobody", http.StatusForbidden)
	})

	// How admin panels open consoles: the app signs a short-lived ticket
	// naming the machine; Caddy shares no state with the app.
	t.Run("signed_ticket", func(t *testing.T) {
		secret := "e2e-ticket-secret-0123456789abcdef0123456789"
		keyFile := filepath.Join(t.TempDir(), "ticket.key")
		if err := os.WriteFile(keyFile, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		cp := startCaddy(t, `
https://localhost:@HTTPS@ {
	tls internal
	websocket_tunnel /websockify {
		jwt_key @KEY@
		allow 127.0.0.1
	}
	file_server {
		root @NOVNC@
	}
}
`, map[string]string{"@KEY@": keyFile, "@NOVNC@": noVNCRoot})
		ticket := func(exp time.Duration, key string) string {
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
				"host": "127.0.0.1", "port": vnc.Port, "exp": time.Now().Add(exp).Unix(),
			}).SignedString([]byte(key))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		checkNoVNC(t, b, cp, vnc, "websockify?token="+ticket(time.Minute, secret), "#ff00ff", [3]int{255, 0, 255}, "novnc-signed-ticket.png")
		checkNoVNCRefused(t, b, cp, "websockify?token="+ticket(-time.Minute, secret), http.StatusUnauthorized)
		checkNoVNCRefused(t, b, cp, "websockify?token="+ticket(time.Minute, "a-forged-key-0123456789abcdef0123456789"), http.StatusUnauthorized)
	})

	t.Run("websockify_reference", func(t *testing.T) {
		need(t, "websockify")
		wsPort := freePort(t)
		wlog := &syncBuffer{}
		ws := exec.Command("websockify", fmt.Sprintf("127.0.0.1:%d", wsPort), fmt.Sprintf("127.0.0.1:%d", vnc.Port))
		ws.Stdout, ws.Stderr = wlog, wlog
		startProc(t, ws, "websockify", wlog)
		waitTCP(t, fmt.Sprintf("127.0.0.1:%d", wsPort), 20*time.Second, wlog)
		cp := startCaddy(t, `
https://localhost:@HTTPS@ {
	tls internal
	reverse_proxy /websockify 127.0.0.1:@WS@
	file_server {
		root @NOVNC@
	}
}
`, map[string]string{"@WS@": fmt.Sprint(wsPort), "@NOVNC@": noVNCRoot})
		checkNoVNC(t, b, cp, vnc, "websockify", "#0000ff", [3]int{0, 0, 255}, "novnc-websockify-reference.png")
	})
}

// checkNoVNC paints the display, loads vnc_lite.html (connecting to wsPath,
// noVNC's path parameter: no leading slash) and waits until the pixels of
// noVNC's canvas are the painted colour.
func checkNoVNC(t *testing.T, b *browser, cp *caddyProc, vnc *vncServer, wsPath, colour string, rgb [3]int, shot string) {
	t.Helper()
	vnc.Paint(t, colour)
	url := cp.URL(fmt.Sprintf("/vnc_lite.html?host=localhost&port=%d&path=%s&encrypt=1&scale=true", cp.HTTPSPort, url.QueryEscape(wsPath)))
	if err := b.run(30*time.Second, navigate(url)); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	// Sample the centre and four points near the corners of the framebuffer.
	check := fmt.Sprintf(`(() => {
		const c = document.querySelector('#screen canvas');
		if (!c || c.width < 100 || c.height < 100) return false;
		const g = c.getContext('2d');
		const pts = [[c.width/2, c.height/2], [10, 10], [c.width-10, 10], [10, c.height-10], [c.width-10, c.height-10]];
		return pts.every(([x, y]) => {
			const d = g.getImageData(Math.floor(x), Math.floor(y), 1, 1).data;
			return Math.abs(d[0]-%d) < 8 && Math.abs(d[1]-%d) < 8 && Math.abs(d[2]-%d) < 8 && d[3] === 255;
		});
	})()`, rgb[0], rgb[1], rgb[2])
	describe := `(() => {
		const c = document.querySelector('#screen canvas');
		const s = document.getElementById('status');
		if (!c) return {status: s && s.textContent, canvas: null};
		const d = c.getContext('2d').getImageData(Math.floor(c.width/2), Math.floor(c.height/2), 1, 1).data;
		return {status: s && s.textContent, w: c.width, h: c.height, centre: Array.from(d)};
	})()`
	b.poll(30*time.Second, check, describe)
	status, err := eval[string](b, 5*time.Second, `document.getElementById('status').textContent`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("noVNC status: %q", status)
	b.screenshot(shot)
	// Repaint while connected: the change must travel through the open tunnel.
	vnc.Paint(t, "#ff0000")
	b.poll(15*time.Second, `(() => {
		const c = document.querySelector('#screen canvas');
		const d = c.getContext('2d').getImageData(Math.floor(c.width/2), Math.floor(c.height/2), 1, 1).data;
		return d[0] > 247 && d[1] < 8 && d[2] < 8;
	})()`, describe)
}

// checkNoVNCRefused checks that the tunnel refuses wsPath before the upgrade
// with the given HTTP status (a browser cannot see it, so a Go client asks
// the same as noVNC would), then loads noVNC with it and waits for noVNC to
// report the failure.
func checkNoVNCRefused(t *testing.T, b *browser, cp *caddyProc, wsPath string, wantStatus int) {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: cp.TLSConfig(), HandshakeTimeout: 10 * time.Second, NetDialContext: loopbackDial}
	ws, resp, err := d.Dial(cp.WSURL("/"+wsPath), http.Header{"Origin": {cp.URL("")}})
	if err == nil {
		ws.Close()
		t.Fatalf("the tunnel upgraded %s; want HTTP %d", wsPath, wantStatus)
	}
	if resp == nil || resp.StatusCode != wantStatus {
		t.Fatalf("handshake for %s: %v (response %v); want HTTP %d", wsPath, err, resp, wantStatus)
	}
	url := cp.URL(fmt.Sprintf("/vnc_lite.html?host=localhost&port=%d&path=%s&encrypt=1", cp.HTTPSPort, url.QueryEscape(wsPath)))
	if err := b.run(30*time.Second, navigate(url)); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	describe := `document.getElementById('status').textContent`
	b.poll(15*time.Second, `/disconnect|fail|wrong|closed/i.test(document.getElementById('status').textContent)`, describe)
	status, _ := eval[string](b, 5*time.Second, describe)
	if strings.Contains(status, "Connected") {
		t.Fatalf("noVNC connected with %s: %q", wsPath, status)
	}
	t.Logf("refused as expected (%s): noVNC says %q", wsPath[:min(len(wsPath), 40)], status)
}
