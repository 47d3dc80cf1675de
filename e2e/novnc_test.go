package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
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
		checkNoVNC(t, b, cp, vnc, "#00ff00", [3]int{0, 255, 0}, "novnc-websocket_tunnel.png")
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
		checkNoVNC(t, b, cp, vnc, "#0000ff", [3]int{0, 0, 255}, "novnc-websockify-reference.png")
	})
}

// checkNoVNC paints the display, loads vnc_lite.html and waits until the
// pixels of noVNC's canvas are the painted colour.
func checkNoVNC(t *testing.T, b *browser, cp *caddyProc, vnc *vncServer, colour string, rgb [3]int, shot string) {
	t.Helper()
	vnc.Paint(t, colour)
	url := cp.URL(fmt.Sprintf("/vnc_lite.html?host=localhost&port=%d&path=websockify&encrypt=1&scale=true", cp.HTTPSPort))
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
