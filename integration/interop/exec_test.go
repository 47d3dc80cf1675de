package interop

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// lineStep is one turn of the conversation with testdata/lines.sh: a text
// message sent, then the number of text messages read back.
type lineStep struct {
	send    string
	replies int
}

// lineScript is the client side of the line protocol (websocketd's, and
// gorilla's command page: each message a line, each line a message). The
// reply counts are the program's; a peer that answers more or less shows
// it in the transcript, since the next step reads what was left over.
var lineScript = []lineStep{
	{"", 1}, // the greeting, before anything is sent
	{"a b  c", 1},
	{"ünïcödé ✓", 1},
	{"two", 2},
	{"env", 2},
	{"err", 1},
	{"quit", 1},
}

// wantTranscript is what every peer must give, but for the differences
// each peer states in lineDifferences.
var wantTranscript = []string{
	"recv hello from the program",
	"send a b  c", "recv got: a b  c",
	"send ünïcödé ✓", "recv got: ünïcödé ✓",
	"send two", "recv first of two", "recv second of two",
	"send env", "recv uri=/lines?q=1", "recv remote=127.0.0.1",
	"send err", "recv wrote to stderr",
	"send quit", "recv bye",
	"close 1000 exit status 3",
}

// lineDifferences are the deliberate differences between the peers, as
// replacements of lines of wantTranscript.
var lineDifferences = map[string]map[string]string{
	// caddyws is the transcript itself: the program's exit status is the
	// close reason (1000 "exit status 3"); stderr goes to Caddy's log by
	// default; the CGI variables are websocketd's.
	"caddyws": {},
	// websocketd sends no close frame when the program exits: it closes
	// the TCP connection, which a client sees as 1006 (abnormal closure),
	// and the exit status is lost.
	"websocketd": {
		"close 1000 exit status 3": "close 1006 unexpected EOF",
	},
	// gorilla's example passes its own environment (no CGI variables), is
	// at /ws, sends stderr to the client on the same pipe as stdout, and
	// closes with 1000 and no reason. Its stderr line comes first, so
	// the stdout line of "err" is read in the next step.
	"gorilla-command": {
		"recv uri=/lines?q=1":      "recv uri=",
		"recv remote=127.0.0.1":    "recv remote=",
		"recv wrote to stderr":     "recv to stderr",
		"send quit":                "send quit\nrecv wrote to stderr",
		"close 1000 exit status 3": "close 1000",
	},
}

// expectedFor applies a peer's stated differences to wantTranscript.
func expectedFor(peer string) []string {
	var out []string
	for _, l := range wantTranscript {
		if r, ok := lineDifferences[peer][l]; ok {
			out = append(out, strings.Split(r, "\n")...)
			continue
		}
		out = append(out, l)
	}
	return out
}

// runLineScript plays lineScript against url and returns the transcript.
func runLineScript(t *testing.T, url string) []string {
	t.Helper()
	c, _, err := dialWS(url, nil, 0)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got []string
	read := func() bool {
		typ, msg, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				got = append(got, strings.TrimSpace(fmt.Sprintf("close %d %s", ce.Code, ce.Text)))
			} else {
				got = append(got, "error "+err.Error())
			}
			return false
		}
		if typ != websocket.TextMessage {
			got = append(got, fmt.Sprintf("binary %q", msg))
			return true
		}
		got = append(got, "recv "+string(msg))
		return true
	}
	for _, s := range lineScript {
		if s.send != "" {
			got = append(got, "send "+s.send)
			if err := c.WriteMessage(websocket.TextMessage, []byte(s.send)); err != nil {
				t.Fatalf("sending %q: %v\ntranscript so far:\n%s", s.send, err, strings.Join(got, "\n"))
			}
		}
		for range s.replies {
			if !read() {
				return got
			}
		}
	}
	// After the program's exit: whatever is left, then the close.
	for read() {
	}
	return got
}

// TestLineProtocolTranscriptMatchesWebsocketd plays the same client script
// against caddyws's exec upstream, Debian's websocketd and gorilla's
// command example, each running the same program: lines in, lines out,
// one message per line, then the close when the program exits. Every
// difference between the peers is stated in lineDifferences.
func TestLineProtocolTranscriptMatchesWebsocketd(t *testing.T) {
	for _, p := range execPeers(t) {
		t.Run(p.name, func(t *testing.T) {
			if p.missing != "" {
				t.Skip("SKIPPED LOUDLY: " + p.missing)
			}
			got := runLineScript(t, p.url)
			want := expectedFor(p.name)
			if !slices.Equal(got, want) {
				t.Errorf("transcript of %s:\n%s\nwant:\n%s", p.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestLineProtocolSameLinesAsWebsocketd compares caddyws with websocketd
// directly, line for line, without the expectations of this file: only
// the close (stated above) may differ.
func TestLineProtocolSameLinesAsWebsocketd(t *testing.T) {
	peers := execPeers(t)
	ours, ref := peers[0], peers[1]
	if ref.missing != "" {
		t.Skip("SKIPPED LOUDLY: " + ref.missing)
	}
	if ours.missing != "" {
		t.Skip("SKIPPED LOUDLY: " + ours.missing)
	}
	a, b := runLineScript(t, ours.url), runLineScript(t, ref.url)
	if len(a) == 0 || len(b) == 0 || !slices.Equal(a[:len(a)-1], b[:len(b)-1]) {
		t.Errorf("caddyws and websocketd differ before the close:\ncaddyws:\n%s\nwebsocketd:\n%s",
			strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	if a[len(a)-1] != "close 1000 exit status 3" || b[len(b)-1] != "close 1006 unexpected EOF" {
		t.Errorf("closes: caddyws %q (want \"close 1000 exit status 3\"), websocketd %q (want \"close 1006\")", a[len(a)-1], b[len(b)-1])
	}
}
