package caddyws

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/crypto/bcrypt"
)

// fakeAuthService is the service forward_auth asks: a real HTTP server that
// answers 200 with X-User for a good session cookie (or an unusable user
// id: too long, or with a space), 200 without X-User for a guest session (a
// service that lets a request through without naming a user), and 401
// otherwise.
func fakeAuthService(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		switch {
		case err != nil:
			http.Error(w, "no session", http.StatusUnauthorized)
		case c.Value == "good-alice":
			w.Header().Set("X-User", "alice")
		case c.Value == "good-bob":
			w.Header().Set("X-User", "bob")
		case c.Value == "long":
			w.Header().Set("X-User", strings.Repeat("a", 257))
		case c.Value == "spaced":
			w.Header().Set("X-User", "eve smith")
		case c.Value == "guest":
			// 200, no user
		default:
			http.Error(w, "bad session", http.StatusUnauthorized)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).String()
}

// identitySites puts websocket_push auth caddy behind no auth handler,
// behind basic_auth, and behind forward_auth with the two placeholders a
// forward_auth setup can use; the /open and /bare routes are what a
// matcher gap or a missing auth handler leaves.
const identitySites = `http://localhost:@HTTP@ {
	basic_auth /basic/* {
		alice %s
	}
	forward_auth /fwd/* %s {
		uri /check
		copy_headers X-User
	}
	forward_auth /fwdrp/* %s {
		uri /check
		copy_headers X-User
	}
	websocket_push /open/ws {
		hub id
		auth caddy
	}
	websocket_push /basic/ws {
		hub id
		auth caddy
	}
	websocket_push /fwd/ws {
		hub id
		auth caddy {http.request.header.X-User}
	}
	websocket_push /fwdrp/ws {
		hub id
		auth caddy {
			user {http.reverse_proxy.header.X-User}
		}
	}
	websocket_push /bare/ws {
		hub id
		auth caddy {http.reverse_proxy.header.X-User}
	}
	websocket_push /push {
		hub id
		publish_key k
	}
}`

// TestPushCaddyAuthRefusesRequestsNoHandlerAuthenticated: auth caddy takes
// the user only from a placeholder an auth handler resolved. Without one (no
// handler in front, a route the handler does not cover, a guest answer from
// forward_auth's service) the upgrade is refused with 401 and a JSON body,
// instead of connecting everyone as the literal user
// "{http.auth.user.id}". basic_auth's user and forward_auth's copied
// header come through; a client's own X-User does not.
func TestPushCaddyAuthRefusesRequestsNoHandlerAuthenticated(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	authAddr := fakeAuthService(t)
	tc, _ := pushCaddy(t, fmt.Sprintf(identitySites, hash, authAddr, authAddr))

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw"))
	for _, c := range []struct {
		name    string
		path    string
		headers map[string]string
		status  int    // 101: connected
		user    string // when connected
	}{
		{"no auth handler in front", "/open/ws", nil, 401, ""},
		{"no auth handler, client claims a user", "/open/ws", map[string]string{"X-User": "admin"}, 401, ""},
		{"basic_auth user", "/basic/ws", map[string]string{"Authorization": basic}, 101, "alice"},
		{"basic_auth without credentials", "/basic/ws", nil, 401, ""},
		{"forward_auth copied header", "/fwd/ws", map[string]string{"Cookie": "session=good-alice"}, 101, "alice"},
		{"forward_auth copied header, other user", "/fwd/ws", map[string]string{"Cookie": "session=good-bob"}, 101, "bob"},
		{"forward_auth refuses", "/fwd/ws", map[string]string{"Cookie": "session=nope"}, 401, ""},
		{"forward_auth refuses, forged X-User", "/fwd/ws", map[string]string{"X-User": "admin"}, 401, ""},
		{"forged X-User beside a good session", "/fwd/ws", map[string]string{"Cookie": "session=good-alice", "X-User": "admin"}, 101, "alice"},
		{"forged X-User beside a guest session", "/fwd/ws", map[string]string{"Cookie": "session=guest", "X-User": "admin"}, 401, ""},
		{"user id over 256 bytes", "/fwdrp/ws", map[string]string{"Cookie": "session=long"}, 401, ""},
		{"user id with a space", "/fwdrp/ws", map[string]string{"Cookie": "session=spaced"}, 401, ""},
		{"forward_auth response placeholder", "/fwdrp/ws", map[string]string{"Cookie": "session=good-bob"}, 101, "bob"},
		{"response placeholder, guest session, forged X-User", "/fwdrp/ws", map[string]string{"Cookie": "session=guest", "X-User": "admin"}, 401, ""},
		{"response placeholder without forward_auth, forged X-User", "/bare/ws", map[string]string{"X-User": "admin"}, 401, ""},
	} {
		h := http.Header{}
		for k, v := range c.headers {
			h.Set(k, v)
		}
		conn, resp, err := pushDialer.Dial(tc.WSURL(c.path), h)
		if c.status == 101 {
			if err != nil {
				t.Errorf("%s: dial: %v (resp %v)", c.name, err, statusOf(resp))
				continue
			}
			f := expectType(t, conn, "connected")
			conn.Close()
			if f.User != c.user {
				t.Errorf("%s: connected as %q, want %q", c.name, f.User, c.user)
			}
			continue
		}
		if err == nil {
			f, _ := tryReadFrame(conn, 2e9)
			conn.Close()
			t.Errorf("%s: upgraded (first frame %+v), want %d", c.name, f, c.status)
			continue
		}
		if resp == nil || resp.StatusCode != c.status {
			t.Errorf("%s: %v (status %v), want %d", c.name, err, statusOf(resp), c.status)
			continue
		}
		// The refusal is ours (a JSON body) when no auth handler answered.
		if resp.Header.Get("Www-Authenticate") == "" && !strings.Contains(c.name, "forward_auth refuses") {
			var body struct{ Error string }
			if resp.Header.Get("Content-Type") != "application/json" || json.NewDecoder(resp.Body).Decode(&body) != nil || body.Error == "" {
				t.Errorf("%s: 401 without a JSON error body (content-type %q)", c.name, resp.Header.Get("Content-Type"))
			}
		}
	}
}

func statusOf(resp *http.Response) any {
	if resp == nil {
		return "no response"
	}
	return resp.StatusCode
}

// TestPushCaddyAuthConfig: the caddy mode's user is one placeholder, given
// as an argument or as the user subdirective; text around it (which would
// keep an unset placeholder as literal text in the user id), two
// placeholders, or a reserved hub name are config errors with the line.
func TestPushCaddyAuthConfig(t *testing.T) {
	for _, c := range []struct{ block, want string }{
		{"websocket_push {\n auth caddy\n}", ""},
		{"websocket_push {\n auth caddy {http.auth.user.id}\n}", ""},
		{"websocket_push {\n auth caddy {\n user {http.reverse_proxy.header.X-User}\n }\n}", ""},
		{"websocket_push {\n auth caddy user-{http.auth.user.id}\n}", "Caddyfile:3"},
		{"websocket_push {\n auth caddy {http.auth.user.id}{host}\n}", "Caddyfile:3"},
		{"websocket_push {\n auth caddy {\n user alice\n }\n}", "Caddyfile:4"},
		{"websocket_push {\n auth caddy {http.auth.user.id} {\n user {http.auth.user.id}\n }\n}", "Caddyfile:4"},
		{"websocket_push {\n auth caddy {\n nickname {http.auth.user.id}\n }\n}", "Caddyfile:4"},
		{"websocket_push {\n auth caddy\n hub site:x\n}", "Caddyfile:4"},
	} {
		_, err := adaptPush(t, c.block)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.block, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: got %v, want an error at %s", c.block, err, c.want)
		}
	}
	// JSON configs get the same checks at load time.
	for _, c := range []struct{ handler, want string }{
		{`{"handler":"websocket_push","auth":{"mode":"caddy","user":"x{http.auth.user.id}"}}`, "one placeholder"},
		{`{"handler":"websocket_push","hub":"site:a@:1","auth":{"mode":"anonymous"}}`, "reserved"},
	} {
		cfg := fmt.Sprintf(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"routes":[{"handle":[%s]}]}}}}}`, freePort(t), c.handler)
		err := caddy.Load([]byte(cfg), true)
		if err == nil {
			_ = caddy.Stop()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.handler, err, c.want)
		}
	}
}
