package caddyws

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

const classicSites = `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub classic
		auth token_is_user
	}
	websocket_push /push {
		hub classic
		publish_key s3cret
	}
}`

// TestPushClassicShapes: the old service's client and backend work
// unchanged: {"token","event"} on /ws, {"userId","event","message"} POSTed to
// /push, the delivered count, and 401/405/400 for bad publishers.
func TestPushClassicShapes(t *testing.T) {
	tc, _ := pushCaddy(t, classicSites)
	alice := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, alice, `{"token":"alice","event":"news"}`)
	f := expectType(t, alice, "connected")
	if f.User != "alice" || len(f.Events) != 1 || f.Events[0] != "news" {
		t.Fatalf("connected frame %+v", f)
	}
	aliceOther := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, aliceOther, `{"token":"alice","event":"sport"}`)
	expectType(t, aliceOther, "connected")
	bob := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, bob, `{"token":"bob","event":"news"}`)
	expectType(t, bob, "connected")

	if n := mustPublish(t, tc.URL("/push"), "s3cret", `{"userId":"alice","event":"news","message":"hello"}`); n != 1 {
		t.Fatalf("delivered %d, want 1", n)
	}
	m := expectType(t, alice, "message")
	if string(m.Message) != `"hello"` || m.Event != "news" || m.ID == "" {
		t.Fatalf("message frame %+v", m)
	}
	if m.Stream != "" || m.Offset != 0 {
		t.Fatalf("position fields without history: %+v", m)
	}
	expectSilence(t, aliceOther, 200*time.Millisecond)
	expectSilence(t, bob, 50*time.Millisecond)

	// A user nobody is connected as: accepted, delivered to none.
	if n := mustPublish(t, tc.URL("/push"), "s3cret", `{"userId":"carol","event":"news","message":"x"}`); n != 0 {
		t.Fatalf("delivered %d to an absent user", n)
	}

	for _, c := range []struct {
		name, method, key, body string
		status                  int
	}{
		{"no key", "POST", "", `{"userId":"alice","event":"news","message":"x"}`, 401},
		{"wrong key", "POST", "nope", `{"userId":"alice","event":"news","message":"x"}`, 401},
		{"GET", "GET", "s3cret", ``, 405},
		{"PUT", "PUT", "s3cret", `{}`, 405},
		{"malformed", "POST", "s3cret", `{"userId":`, 400},
		{"no message", "POST", "s3cret", `{"userId":"alice"}`, 400},
		{"no address", "POST", "s3cret", `{"message":"x"}`, 400},
		{"not an object", "POST", "s3cret", `"x"`, 400},
	} {
		req, _ := http.NewRequest(c.method, tc.URL("/push"), strings.NewReader(c.body))
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		resp, err := pushHTTP.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != c.status || body["error"] == "" {
			t.Errorf("%s: got %d %v, want %d with a JSON error", c.name, resp.StatusCode, body, c.status)
		}
		if c.status == 405 && resp.Header.Get("Allow") != "POST" {
			t.Errorf("%s: Allow %q", c.name, resp.Header.Get("Allow"))
		}
	}
	expectSilence(t, alice, 100*time.Millisecond)

	// The subscribe route does not publish, the publish route does not
	// subscribe.
	if st, _ := postPush(t, tc.URL("/ws"), "s3cret", `{"userId":"alice","message":"x"}`); st != 401 {
		t.Fatalf("publishing on the subscribe route: %d, want 401", st)
	}
	if _, resp, err := pushDialer.Dial(tc.WSURL("/push"), nil); err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("subscribing on the publish route: %v %v", err, resp)
	}
}

// TestPushClassicExample runs examples/classic.Caddyfile (ports swapped for
// the harness's) with the classic client and backend shapes.
func TestPushClassicExample(t *testing.T) {
	src, err := os.ReadFile("examples/classic.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	i := strings.Index(s, ":8080 {")
	if i < 0 {
		t.Fatal("examples/classic.Caddyfile no longer serves :8080")
	}
	t.Setenv("PUSH_KEY", "example-key")
	tc, _ := pushCaddy(t, "http://localhost:@HTTP@ {"+s[i+len(":8080 {"):])
	c := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, c, `{"token":"42","event":"orders"}`)
	expectType(t, c, "connected")
	if st, _ := postPush(t, tc.URL("/push"), "", `{"userId":"42","event":"orders","message":"x"}`); st != 401 {
		t.Fatalf("without the key: %d", st)
	}
	if n := mustPublish(t, tc.URL("/push"), "example-key", `{"userId":"42","event":"orders","message":"shipped"}`); n != 1 {
		t.Fatalf("delivered %d", n)
	}
	if f := expectType(t, c, "message"); string(f.Message) != `"shipped"` {
		t.Fatalf("%+v", f)
	}
}
