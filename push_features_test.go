package caddyws

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"
)

// TestPushOneSocketManyEventsAndAddressing: subscribe/unsubscribe on a live
// connection, an event list on connect, and every addressing form with
// payloads of every JSON kind.
func TestPushOneSocketManyEventsAndAddressing(t *testing.T) {
	tc, _ := pushCaddy(t, `http://localhost:@HTTP@ {
	websocket_push /ws {
		hub addr
		auth token_is_user
	}
	websocket_push /push {
		hub addr
		publish_key k
	}
}`)
	pub := func(body string) int { return mustPublish(t, tc.URL("/push"), "k", body) }
	a := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, a, `{"type":"connect","token":"alice","events":["e1","e2"]}`)
	if f := expectType(t, a, "connected"); strings.Join(f.Events, ",") != "e1,e2" {
		t.Fatalf("connected %+v", f)
	}
	b := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, b, `{"type":"connect","token":"bob"}`)
	expectType(t, b, "connected")
	c := dialPush(t, tc.WSURL("/ws"), nil)
	sendJSON(t, c, `{"type":"connect","token":"carol","events":["e2"]}`)
	expectType(t, c, "connected")

	expect := func(conn *websocket.Conn, msg, event string) {
		t.Helper()
		f := expectType(t, conn, "message")
		if string(f.Message) != msg || f.Event != event {
			t.Fatalf("got %s on %q, want %s on %q", f.Message, f.Event, msg, event)
		}
	}
	// user only: every connection of the user, whatever its events.
	if n := pub(`{"userId":"bob","message":{"k":[1,"x"]}}`); n != 1 {
		t.Fatalf("user: delivered %d", n)
	}
	expect(b, `{"k":[1,"x"]}`, "")
	// event only.
	if n := pub(`{"event":"e2","message":42}`); n != 2 {
		t.Fatalf("event: delivered %d", n)
	}
	expect(a, `42`, "e2")
	expect(c, `42`, "e2")
	// user + event: only if the user's connection has the event.
	if n := pub(`{"userId":"carol","event":"e1","message":"no"}`); n != 0 {
		t.Fatalf("user+event not subscribed: delivered %d", n)
	}
	if n := pub(`{"userId":"alice","event":"e1","message":[true,null]}`); n != 1 {
		t.Fatalf("user+event: delivered %d", n)
	}
	expect(a, `[true,null]`, "e1")
	// a list of users.
	if n := pub(`{"userIds":["alice","carol","nobody"],"message":"both"}`); n != 2 {
		t.Fatalf("userIds: delivered %d", n)
	}
	expect(a, `"both"`, "")
	expect(c, `"both"`, "")
	// broadcast.
	if n := pub(`{"broadcast":true,"message":1.5}`); n != 3 {
		t.Fatalf("broadcast: delivered %d", n)
	}
	for _, conn := range []*websocket.Conn{a, b, c} {
		expect(conn, `1.5`, "")
	}
	// subscribe and unsubscribe on the live socket.
	sendJSON(t, b, `{"type":"subscribe","events":["e3"]}`)
	if f := expectType(t, b, "subscribed"); strings.Join(f.Events, ",") != "e3" {
		t.Fatalf("subscribed %+v", f)
	}
	sendJSON(t, a, `{"type":"unsubscribe","events":["e2"]}`)
	expectType(t, a, "unsubscribed")
	if n := pub(`{"event":"e3","message":"three"}`); n != 1 {
		t.Fatalf("after subscribe: delivered %d", n)
	}
	expect(b, `"three"`, "e3")
	if n := pub(`{"event":"e2","message":"two"}`); n != 1 {
		t.Fatalf("after unsubscribe: delivered %d", n)
	}
	expect(c, `"two"`, "e2")
	expectSilence(t, a, 150*time.Millisecond)
	expectSilence(t, b, 10*time.Millisecond)
}

func hsToken(t *testing.T, secret, sub string, exp time.Time, events []string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "exp": exp.Unix()}
	if events != nil {
		claims["events"] = events
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPushAuthModes: every subscriber auth mode, good and bad, with its
// close code.
func TestPushAuthModes(t *testing.T) {
	secret := strings.Repeat("s", 32)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("tok-alice: alice\ntok-bob: bob news\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Token string }
		_ = jsonDecode(r, &body)
		if body.Token == "cb-good" {
			fmt.Fprint(w, `{"userId":"dave"}`)
			return
		}
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer cb.Close()
	down := fmt.Sprintf("http://127.0.0.1:%d/auth", freePort(t))
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	tc, _ := pushCaddy(t, fmt.Sprintf(`http://localhost:@HTTP@ {
	websocket_push /jwt {
		hub auth
		auth jwt {
			key %s
		}
		auth_timeout 500ms
	}
	websocket_push /file {
		hub auth
		auth token_file %s
	}
	websocket_push /cb {
		hub auth
		auth callback %s
	}
	websocket_push /cbdown {
		hub auth
		auth callback %s {
			timeout 1s
		}
	}
	websocket_push /anon {
		hub auth
		auth anonymous
	}
	route /basic {
		basic_auth {
			erin %s
		}
		websocket_push {
			hub auth
			auth caddy
		}
	}
	websocket_push /push {
		hub auth
		publish_key k
	}
}`, secret, tokens, cb.URL, down, hash))

	connectOK := func(path, first, user string) *websocket.Conn {
		t.Helper()
		c := dialPush(t, tc.WSURL(path), nil)
		if first != "" {
			sendJSON(t, c, first)
		}
		f := expectType(t, c, "connected")
		if f.User != user {
			t.Fatalf("%s: user %q, want %q", path, f.User, user)
		}
		return c
	}
	refused := func(path, first string, code int) {
		t.Helper()
		c := dialPush(t, tc.WSURL(path), nil)
		if first != "" {
			sendJSON(t, c, first)
		}
		expectClose(t, c, code, 5*time.Second)
	}
	good := hsToken(t, secret, "alice", time.Now().Add(time.Hour), nil)
	connectOK("/jwt", `{"token":"`+good+`","event":"news"}`, "alice")
	refused("/jwt", `{"token":"`+hsToken(t, secret, "alice", time.Now().Add(-time.Hour), nil)+`"}`, 4001)
	refused("/jwt", `{"token":"`+hsToken(t, strings.Repeat("x", 32), "alice", time.Now().Add(time.Hour), nil)+`"}`, 4001)
	refused("/jwt", `{"token":"garbage"}`, 4001)
	refused("/jwt", `{"event":"news"}`, 4001)
	refused("/jwt", ``, 4008) // silent: closed after auth_timeout
	limited := hsToken(t, secret, "alice", time.Now().Add(time.Hour), []string{"news"})
	refused("/jwt", `{"token":"`+limited+`","event":"sport"}`, 4003)
	lc := connectOK("/jwt", `{"token":"`+limited+`","event":"news"}`, "alice")
	sendJSON(t, lc, `{"type":"subscribe","events":["sport"]}`)
	if f := expectType(t, lc, "error"); f.Code != "forbidden" {
		t.Fatalf("subscribe to a forbidden event: %+v", f)
	}
	// Non-browser clients: query parameter and Authorization header.
	q := dialPush(t, tc.WSURL("/jwt?token="+good), nil)
	if f := expectType(t, q, "connected"); f.User != "alice" {
		t.Fatalf("query token: %+v", f)
	}
	hc := dialPush(t, tc.WSURL("/jwt"), http.Header{"Authorization": {"Bearer " + good}})
	expectType(t, hc, "connected")
	bq := dialPush(t, tc.WSURL("/jwt?token=bad"), nil)
	expectClose(t, bq, 4001, 5*time.Second)

	connectOK("/file", `{"token":"tok-alice","event":"x"}`, "alice")
	refused("/file", `{"token":"tok-unknown"}`, 4001)
	refused("/file", `{"token":"tok-bob","event":"sport"}`, 4003)

	dave := connectOK("/cb", `{"token":"cb-good","event":"news"}`, "dave")
	refused("/cb", `{"token":"cb-bad"}`, 4001)
	refused("/cbdown", `{"token":"cb-good"}`, 1013)

	// Anonymous is known at upgrade: connected at once, then the connect
	// frame subscribes.
	anon := connectOK("/anon", `{"type":"connect","events":["news"]}`, "")
	if f := expectType(t, anon, "subscribed"); strings.Join(f.Events, ",") != "news" {
		t.Fatalf("anonymous subscribe: %+v", f)
	}

	// Caddy's own auth: basic_auth sets {http.auth.user.id}.
	basic := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("erin:pw"))}}
	erin := dialPush(t, tc.WSURL("/basic"), basic)
	if f := expectType(t, erin, "connected"); f.User != "erin" {
		t.Fatalf("caddy auth: %+v", f)
	}
	if _, resp, err := pushDialer.Dial(tc.WSURL("/basic"), nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("caddy auth without credentials: %v %v", err, resp)
	}

	// Every identity receives what is addressed to it.
	if n := mustPublish(t, tc.URL("/push"), "k", `{"userId":"erin","message":"hi erin"}`); n != 1 {
		t.Fatalf("to erin: %d", n)
	}
	expectType(t, erin, "message")
	if n := mustPublish(t, tc.URL("/push"), "k", `{"userId":"dave","event":"news","message":"hi"}`); n != 1 {
		t.Fatalf("to dave: %d", n)
	}
	expectType(t, dave, "message")
	mustPublish(t, tc.URL("/push"), "k", `{"event":"news","message":"all news"}`)
	expectType(t, anon, "message")
}

// TestPushPublishAuth: publishing is closed by default; bearer key,
// publisher JWT and publish_auth none each open it.
func TestPushPublishAuth(t *testing.T) {
	secret := strings.Repeat("p", 32)
	tc, _ := pushCaddy(t, fmt.Sprintf(`http://localhost:@HTTP@ {
	websocket_push /closed {
		hub pa
		auth anonymous
	}
	websocket_push /jwt {
		hub pa
		publish_jwt {
			key %s
			require role publisher
		}
	}
	websocket_push /open {
		hub pa
		publish_auth none
	}
}`, secret))
	body := `{"broadcast":true,"message":1}`
	if st, _ := postPush(t, tc.URL("/closed"), "", body); st != 401 {
		t.Fatalf("closed by default: %d", st)
	}
	if st, _ := postPush(t, tc.URL("/open"), "", body); st != 200 {
		t.Fatalf("publish_auth none: %d", st)
	}
	pubTok := func(role string, exp time.Time) string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"role": role, "exp": exp.Unix()}).SignedString([]byte(secret))
		return s
	}
	for _, c := range []struct {
		name, tok string
		status    int
	}{
		{"good", pubTok("publisher", time.Now().Add(time.Hour)), 200},
		{"expired", pubTok("publisher", time.Now().Add(-time.Hour)), 401},
		{"wrong role", pubTok("reader", time.Now().Add(time.Hour)), 401},
		{"no token", "", 401},
		{"not a jwt", "abc", 401},
	} {
		if st, b := postPush(t, tc.URL("/jwt"), c.tok, body); st != c.status {
			t.Errorf("publisher jwt %s: %d %s, want %d", c.name, st, b, c.status)
		}
	}
}
