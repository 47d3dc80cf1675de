package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyws/caddyws/internal/testcaddy"
)

// SSE clients none of us wrote against websocket_push: curl -N and Node's
// eventsource package (sse.mjs), on plain HTTP/1.1 through a Caddy process.

const ssePushKey = "interop-publish-key"

// ssePush is a Caddy serving a push hub: subscribers at /ws (token file:
// alice-token is alice) and at /gz/ws behind encode gzip, publishers at
// /push, history on.
type ssePush struct {
	base, admin string
	proc        *testcaddy.Process
}

func startSSEPush(t *testing.T) *ssePush {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("alice-token: alice\nbob-token: bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var sp *ssePush
	testcaddy.WithPorts(t, 2, func(ports []int) error {
		config := fmt.Sprintf(`{
	admin 127.0.0.1:%[2]d
	auto_https off
}
http://:%[1]d {
	bind 127.0.0.1
	route /ws {
		websocket_push {
			hub interop
			auth token_file %[3]s
			history 1000 10m
		}
	}
	route /gz/ws {
		encode gzip {
			# The first events are smaller than the default 512 bytes
			# encode waits for before it decides to compress.
			minimum_length 1
		}
		uri strip_prefix /gz
		websocket_push {
			hub interop
			auth token_file %[3]s
			history 1000 10m
		}
	}
	route /push {
		websocket_push {
			hub interop
			auth token_file %[3]s
			publish_key %[4]s
		}
	}
}
`, ports[0], ports[1], tokens, ssePushKey)
		p, err := testcaddy.RunProcess(t, config, testcaddy.ProcessOptions{})
		if err != nil {
			return err
		}
		sp = &ssePush{base: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), admin: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), proc: p}
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if resp, err := http.Get(sp.admin + "/config/"); err == nil {
				resp.Body.Close()
				return nil
			}
			select {
			case <-p.Exited():
				p.Stop()
				return fmt.Errorf("caddy exited: %s", testcaddy.Tail(p.Log(), 3000))
			case <-time.After(100 * time.Millisecond):
			}
		}
		return fmt.Errorf("caddy did not serve its admin API within 60s: %s", testcaddy.Tail(p.Log(), 3000))
	})
	return sp
}

func (sp *ssePush) publish(t *testing.T, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, sp.base+"/push", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ssePushKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("publishing %s: %v", body, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publishing %s: %d %s", body, resp.StatusCode, b)
	}
}

func (sp *ssePush) drop(t *testing.T, user string) {
	t.Helper()
	resp, err := http.Post(sp.admin+"/websocket_push/drop", "application/json", strings.NewReader(fmt.Sprintf(`{"hub":"interop","user":%q}`, user)))
	if err != nil {
		t.Fatalf("admin drop: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("admin drop %s: %d %s", user, resp.StatusCode, b)
	}
}

func needCurl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("SKIPPED LOUDLY: curl is not installed (apt-get install curl; .ci/run installs it): the curl -N SSE interop test DID NOT RUN")
	}
}

// curlStream is `curl -N` on an SSE stream, its output line by line.
type curlStream struct {
	t     *testing.T
	lines chan string
	done  chan error
	seen  []string
}

func startCurl(t *testing.T, args ...string) *curlStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "-N", "-H", "Accept: text/event-stream"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting curl: %v", err)
	}
	cs := &curlStream{t: t, lines: make(chan string, 1024), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			cs.lines <- sc.Text()
		}
		close(cs.lines)
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, stderr.String())
		}
		cs.done <- err
	}()
	return cs
}

// until reads lines until one satisfies ok, and returns the lines read for it.
func (cs *curlStream) until(what string, ok func(string) bool) []string {
	cs.t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, open := <-cs.lines:
			if !open {
				cs.t.Fatalf("curl's stream ended while waiting for %s; it sent %q", what, append(cs.seen, got...))
			}
			got = append(got, l)
			if ok(l) {
				cs.seen = append(cs.seen, got...)
				return got
			}
		case <-timeout:
			// Not at the end of a buffer: each event must arrive on its own.
			cs.t.Fatalf("no %s from curl within 10s; it sent %q", what, append(cs.seen, got...))
		}
	}
}

// TestSSECurlReceivesEventByEvent: curl -N subscribed with the token cookie
// gets the retry hint and the connected event, then each published message
// as its own event (id, event name, the WebSocket frame's JSON) before the
// next one is published — a buffered stream would deliver them at the end —
// and, dropped by the operator, a close event with 4004 and the end of the
// stream. The same through encode gzip, curl decompressing (--compressed).
func TestSSECurlReceivesEventByEvent(t *testing.T) {
	needCurl(t)
	for _, tc := range []struct {
		name, path, encoding string
		args                 []string
	}{
		{"plain", "/ws", "", nil},
		{"encode gzip", "/gz/ws", "gzip", []string{"--compressed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := startSSEPush(t)
			headers := filepath.Join(t.TempDir(), "headers")
			args := append(tc.args, "-D", headers, "--cookie", "caddyws_token=alice-token", sp.base+tc.path+"?event=news")
			curlEventByEvent(t, sp, func() {
				h, _ := os.ReadFile(headers)
				got := ""
				for _, l := range strings.Split(string(h), "\n") {
					if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Content-Encoding") {
						got = strings.TrimSpace(v)
					}
				}
				if got != tc.encoding {
					t.Fatalf("Content-Encoding %q, want %q (headers %q)", got, tc.encoding, h)
				}
			}, args...)
		})
	}
}

func curlEventByEvent(t *testing.T, sp *ssePush, checkHeaders func(), args ...string) {
	cs := startCurl(t, args...)
	first := cs.until("the connected event", func(l string) bool { return strings.HasPrefix(l, "data:") })
	if head := strings.Join(first, "\n"); !strings.Contains(head, "retry: ") || !strings.Contains(head, "event: connected") ||
		!strings.Contains(first[len(first)-1], `"user":"alice"`) {
		t.Fatalf("the stream starts with %q, want a retry: hint and event: connected with user alice", first)
	}
	checkHeaders()
	for _, m := range []string{"c1", "c2", "c3"} {
		sp.publish(t, fmt.Sprintf(`{"userId":"alice","event":"news","message":%q}`, m))
		ev := cs.until("the event of "+m, func(l string) bool { return strings.HasPrefix(l, "data:") })
		joined := strings.Join(ev, "\n")
		var f struct{ Type, Event, Stream, Message string }
		if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(ev[len(ev)-1], "data:"))), &f); err != nil {
			t.Fatalf("the data of %s is not the message frame's JSON: %q (%v)", m, ev, err)
		}
		if !strings.Contains(joined, "event: news") || !strings.Contains(joined, "\nid: ") || f.Type != "message" || f.Message != m || f.Stream != "user:alice" {
			t.Fatalf("event for %s: %q, want event: news, an id and the message frame", m, ev)
		}
	}
	sp.drop(t, "alice")
	ev := cs.until("the close event", func(l string) bool { return strings.HasPrefix(l, "data:") })
	if !strings.Contains(strings.Join(ev, "\n"), "event: close") || !strings.Contains(ev[len(ev)-1], `"code":4004`) {
		t.Fatalf("after the drop: %q, want event: close with code 4004", ev)
	}
	for range cs.lines {
	}
	select {
	case err := <-cs.done:
		if err != nil {
			t.Fatalf("curl did not end cleanly after the close event: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not end the stream after its close event")
	}
}

// TestSSECurlAuthModes: the token from an Authorization header, the query
// and the cookie each open a stream as alice; a bad token is a 401 with a
// JSON body and no stream.
func TestSSECurlAuthModes(t *testing.T) {
	needCurl(t)
	sp := startSSEPush(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"bearer header", []string{"-H", "Authorization: Bearer alice-token", sp.base + "/ws?event=news"}},
		{"query token", []string{sp.base + "/ws?event=news&token=alice-token"}},
		{"cookie", []string{"--cookie", "caddyws_token=alice-token", sp.base + "/ws?event=news"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := startCurl(t, tc.args...)
			ev := cs.until("the connected event", func(l string) bool { return strings.HasPrefix(l, "data:") })
			if !strings.Contains(ev[len(ev)-1], `"user":"alice"`) {
				t.Fatalf("connected as %q, want alice", ev)
			}
			sp.publish(t, `{"userId":"alice","event":"news","message":"hello"}`)
			cs.until("the message", func(l string) bool { return strings.HasPrefix(l, "data:") && strings.Contains(l, `"message":"hello"`) })
		})
	}
	t.Run("bad token", func(t *testing.T) {
		out, err := exec.Command("curl", "-sS", "-H", "Accept: text/event-stream", "-H", "Authorization: Bearer forged",
			"-w", "\n%{http_code} %{content_type}", "--max-time", "10", sp.base+"/ws?event=news").Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		i := strings.LastIndexByte(string(out), '\n')
		body, status := strings.TrimSpace(string(out[:i])), string(out[i+1:])
		if !strings.HasPrefix(status, "401 application/json") || !json.Valid([]byte(body)) || !strings.Contains(body, `"error"`) {
			t.Fatalf("a forged token got %q %q, want 401 with a JSON error body", status, body)
		}
	})
}

// TestSSENodeEventSource runs sse.mjs: npm's eventsource alone (its own
// reconnect with Last-Event-ID after the server's close event) and under
// client/caddyws-push.js; both must see every message once, in order,
// including those published while no stream was open. And the client with a
// forged token stops at the 401 (as 4001) instead of retrying.
func TestSSENodeEventSource(t *testing.T) {
	dir := nodeDir(t)
	for _, mode := range []string{"native", "client", "refused"} {
		t.Run(mode, func(t *testing.T) {
			sp := startSSEPush(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", "sse.mjs", mode)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "PUSH_SSE="+sp.base+"/ws", "PUSH_URL="+sp.base+"/push",
				"PUSH_KEY="+ssePushKey, "ADMIN_URL="+sp.admin)
			out, err := cmd.CombinedOutput()
			var res struct {
				OK    bool
				Log   []string
				Error string
			}
			if jerr := json.Unmarshal(bytes.TrimSpace(out), &res); jerr != nil || err != nil || !res.OK {
				t.Fatalf("node sse.mjs %s: %v\n%s", mode, err, out)
			}
			t.Logf("node sse.mjs %s: %s", mode, strings.Join(res.Log, "; "))
		})
	}
}
