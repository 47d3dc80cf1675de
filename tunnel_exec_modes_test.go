//go:build unix

package caddyws

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestExecBinaryRelays16MiBEachWayThroughCat(t *testing.T) {
	cat := needProgram(t, "cat")
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /cat {
		exec `+cat+` {
			mode binary
			allow_anonymous
		}
	}
}`)
	c := mustTunnel(t, tc.WSURL("/cat"), nil)
	data := make([]byte, 16<<20)
	_, _ = rand.Read(data)
	got := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		n := 0
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		for n < len(data) {
			mt, p, err := c.ReadMessage()
			if err != nil {
				t.Errorf("read after %d bytes: %v", n, err)
				break
			}
			if mt != websocket.BinaryMessage {
				t.Errorf("message type %d", mt)
			}
			h.Write(p)
			n += len(p)
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
	}()
	for off := 0; off < len(data); off += 100000 {
		if err := c.WriteMessage(websocket.BinaryMessage, data[off:min(off+100000, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if sum := <-got; sum != sha256.Sum256(data) {
		t.Fatal("bytes through cat differ")
	}
	// The client's close ends cat (stdin closed): 1000.
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	expectTunnelClose(t, c, 1000, 5*time.Second)
}

// ptyRead reads terminal output until it contains want.
func ptyRead(t *testing.T, c *websocket.Conn, want string) string {
	t.Helper()
	var out bytes.Buffer
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for !strings.Contains(out.String(), want) {
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %q in %q: %v", want, out.String(), err)
		}
		out.Write(p)
	}
	return out.String()
}

func TestExecPTYResizeCtrlCAndBadControl(t *testing.T) {
	sh := needProgram(t, "sh")
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /term {
		exec `+sh+` {
			mode pty
			allow_anonymous
		}
	}
}`)
	c := mustTunnel(t, tc.WSURL("/term"), nil)
	send := func(s string) {
		t.Helper()
		if err := c.WriteMessage(websocket.BinaryMessage, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"resize","cols":101,"rows":37}`)); err != nil {
		t.Fatal(err)
	}
	// The markers are computed, so the terminal's echo of the typed line
	// does not match them.
	send("stty size; echo size-$((40+2))\r")
	if out := ptyRead(t, c, "size-42\r\n"); !strings.Contains(out, "37 101") {
		t.Fatalf("stty size after resize: %q", out)
	}
	// Ctrl-C interrupts a running sleep: the shell prints the marker long
	// before the sleep would end.
	begin := time.Now()
	send("sleep 30; echo after-sleep\r")
	time.Sleep(300 * time.Millisecond)
	send("\x03")
	send("echo inter''rupted\r")
	if out := ptyRead(t, c, "interrupted\r\n"); strings.Contains(out, "\nafter-sleep") {
		t.Fatalf("the command after sleep ran: %q", out)
	}
	if time.Since(begin) > 10*time.Second {
		t.Fatal("Ctrl-C did not interrupt sleep")
	}
	// Any other text message closes with 4400 and says why.
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"exec","cmd":"id"}`)); err != nil {
		t.Fatal(err)
	}
	if reason := expectTunnelClose(t, c, 4400, 10*time.Second); !strings.Contains(reason, "unknown control message") {
		t.Fatalf("reason %q", reason)
	}
}

func TestExecEnvironmentIsMinimalAndInjectionProof(t *testing.T) {
	sh := needProgram(t, "sh")
	t.Setenv("CADDYWS_TEST_SECRET", "s3cret-value")
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /env/* {
		exec `+sh+` -c "env; echo args:$#:$0" {
			env SEGMENT {http.request.uri.path.1}
			env QUERY {http.request.uri.query.x}
			pass_header X-Forwarded-User
			allow_anonymous
		}
	}
}`)
	hdr := http.Header{}
	hdr.Set("X-Forwarded-User", "bob")
	hdr.Set("X-Not-Passed", "nope")
	c := mustTunnel(t, tc.WSURL("/env/seg%3Bid%20-x?x=$(id)%0AEVIL=1"), hdr)
	var lines []string
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, p, err := c.ReadMessage()
		if err != nil {
			break
		}
		lines = append(lines, string(p))
	}
	out := strings.Join(lines, "\n")
	for _, bad := range []string{"s3cret-value", "CADDYWS_TEST_SECRET", "HTTP_X_NOT_PASSED", "\nEVIL=1", "uid="} {
		if strings.Contains("\n"+out, bad) {
			t.Fatalf("environment holds %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{"HTTP_X_FORWARDED_USER=bob", "SEGMENT=seg;id -x", "QUERY=$(id) EVIL=1", "REQUEST_METHOD=GET", "REMOTE_ADDR=127.0.0.1", "args:0:" + sh, "PATH=/usr/local/bin:/usr/bin:/bin"} {
		if !strings.Contains(out, want) {
			t.Fatalf("environment lacks %q:\n%s", want, out)
		}
	}
}

func TestExecRefusesPastMaxConnectionsWith503(t *testing.T) {
	cat := needProgram(t, "cat")
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /cat {
		exec `+cat+` {
			allow_anonymous
		}
		max_connections 2
	}
}`)
	mustTunnel(t, tc.WSURL("/cat"), nil)
	mustTunnel(t, tc.WSURL("/cat"), nil)
	if c, status, msg := wsDial(t, tc.WSURL("/cat"), nil); c != nil || status != 503 || msg == "" {
		t.Fatalf("third program: conn=%v status %d %q", c != nil, status, msg)
	}
}

func TestExecLongOutputLineClosesWith1009(t *testing.T) {
	sh := needProgram(t, "sh")
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /long {
		exec `+sh+` -c "echo short; head -c 5000 /dev/zero | tr '\\0' x; echo; sleep 30" {
			max_line 1KiB
			allow_anonymous
		}
	}
}`)
	c := mustTunnel(t, tc.WSURL("/long"), nil)
	if got := readText(t, c); got != "short" {
		t.Fatalf("first line %q", got)
	}
	if reason := expectTunnelClose(t, c, websocket.CloseMessageTooBig, 10*time.Second); !strings.Contains(reason, "max_line") {
		t.Fatalf("reason %q", reason)
	}
}
