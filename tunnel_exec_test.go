package caddyws

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// needProgram skips loudly when a program the test runs is missing.
func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// readText reads one text message.
func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, p, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("reading a line: %v", err)
	}
	if mt != websocket.TextMessage {
		t.Fatalf("message type %d, want text", mt)
	}
	return string(p)
}

func TestExecLinesRoundTripAndExitStatusClose(t *testing.T) {
	sh := needProgram(t, "sh")
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /lines {
		exec `+sh+` -c "while read l; do echo \"got:$l\"; [ \"$l\" = bye ] && exit 3; done" {
			allow_anonymous
		}
	}
}`)
	c := mustTunnel(t, tc.WSURL("/lines"), nil)
	for _, l := range []string{"hello", "two words", ""} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(l)); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, c); got != "got:"+l {
			t.Fatalf("got %q, want %q", got, "got:"+l)
		}
	}
	// A binary message is dropped in lines mode, as websocketd does.
	_ = c.WriteMessage(websocket.BinaryMessage, []byte("ignored\n"))
	_ = c.WriteMessage(websocket.TextMessage, []byte("bye"))
	if got := readText(t, c); got != "got:bye" {
		t.Fatalf("got %q, want got:bye", got)
	}
	if reason := expectTunnelClose(t, c, websocket.CloseNormalClosure, 5*time.Second); reason != "exit status 3" {
		t.Fatalf("close reason %q, want exit status 3", reason)
	}
}

func TestExecMissingProgramClosesWith1011(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /missing {
		exec /nonexistent/program {
			allow_anonymous
		}
	}
}`)
	c := mustTunnel(t, tc.WSURL("/missing"), nil)
	if reason := expectTunnelClose(t, c, websocket.CloseInternalServerErr, 5*time.Second); !strings.Contains(reason, "start") {
		t.Fatalf("close reason %q", reason)
	}
}

func TestExecRefusesAnonymousWith401(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /anon {
		exec /bin/cat
	}
}`)
	c, status, msg := wsDial(t, tc.WSURL("/anon"), nil)
	if c != nil || status != 401 || msg != "authentication required" {
		t.Fatalf("got conn=%v status %d %q, want 401", c != nil, status, msg)
	}
}
