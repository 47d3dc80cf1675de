package caddyws

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// threeSites are three unrelated sites: A and B on two ports, C on A's port
// under another host name. %s is each site's hub line (none, or a shared
// name); %s at the end is a marker a reload changes.
const threeSites = `http://localhost:@HTTP@ {
	websocket_push /ws {
		%[1]s
		auth token_is_user
	}
	websocket_push /push {
		%[1]s
		publish_key k
	}
	respond /version "%[2]s"
}
http://localhost:@EXTRA@ {
	websocket_push /ws {
		%[1]s
		auth token_is_user
	}
	websocket_push /push {
		%[1]s
		publish_key k
	}
}
http://127.0.0.1:@HTTP@ {
	websocket_push /ws {
		%[1]s
		auth token_is_user
	}
	websocket_push /push {
		%[1]s
		publish_key k
	}
}`

// TestPushSitesWithoutHubLineAreIsolated: without a hub line a handler
// shares its hub only with the handlers of its own site (server and host
// names). A broadcast or user message published on site A reaches only A's
// subscribers and A's delivered counts only them; sites on another port or
// another host of the same port get nothing. The unnamed hubs are named
// site:<hosts>@<listen> in the admin API, which addresses them; a reload
// with unchanged settings keeps them. Naming the same hub on every site
// shares it (the positive control).
func TestPushSitesWithoutHubLineAreIsolated(t *testing.T) {
	tc, portB := pushCaddy(t, fmt.Sprintf(threeSites, "", "one"))
	hostA := fmt.Sprintf("localhost:%d", tc.HTTPPort)
	hostB := fmt.Sprintf("localhost:%d", portB)
	hostC := fmt.Sprintf("127.0.0.1:%d", tc.HTTPPort)
	sub := func(host, user string) *websocket.Conn {
		c := dialPush(t, "ws://"+host+"/ws", nil)
		sendJSON(t, c, fmt.Sprintf(`{"type":"connect","token":%q}`, user))
		expectType(t, c, "connected")
		return c
	}
	pub := func(host, body string) int { return mustPublish(t, "http://"+host+"/push", "k", body) }

	a, b, c := sub(hostA, "alice"), sub(hostB, "bob"), sub(hostC, "alice")
	if n := pub(hostA, `{"broadcast":true,"message":"to A"}`); n != 1 {
		t.Errorf("broadcast on site A: delivered %d, want 1 (A's own subscriber only)", n)
	}
	if n := pub(hostA, `{"userId":"alice","message":"alice on A"}`); n != 1 {
		t.Errorf("user message on site A: delivered %d, want 1", n)
	}
	expectType(t, a, "message")
	expectType(t, a, "message")
	if n := pub(hostC, `{"broadcast":true,"message":"to C"}`); n != 1 {
		t.Errorf("broadcast on site C (A's port, other host): delivered %d, want 1", n)
	}
	expectType(t, c, "message")
	// A read that times out ends a gorilla connection: silence is checked
	// last on each.
	expectSilence(t, b, 300*time.Millisecond)
	expectSilence(t, a, 50*time.Millisecond)
	expectSilence(t, c, 50*time.Millisecond)

	// The admin API lists and addresses the unnamed hubs by their names.
	names := hubNames(t, tc, "")
	hubB := fmt.Sprintf("site:localhost@:%d", portB)
	want := []string{
		fmt.Sprintf("site:127.0.0.1@:%d", tc.HTTPPort),
		fmt.Sprintf("site:localhost@:%d", tc.HTTPPort),
		hubB,
	}
	sort.Strings(want)
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("hubs %q, want %q", names, want)
	}
	if got := hubNames(t, tc, hubB); len(got) != 1 || got[0] != hubB {
		t.Fatalf("stats?hub=%s: %q", hubB, got)
	}
	b2 := sub(hostB, "alice")
	st, body := tc.Admin("POST", "/websocket_push/drop", strings.NewReader(fmt.Sprintf(`{"user":"alice","hub":%q}`, hubB)))
	if st != 200 || !strings.Contains(string(body), `"dropped":1`) {
		t.Fatalf("drop of alice on site B's hub: %d %s", st, body)
	}
	expectClose(t, b2, 4004, 5*time.Second)

	// A reload with unchanged push settings keeps the unnamed hubs.
	dave := sub(hostA, "dave")
	reload := func(hubLine, version string) {
		tc.Reload(strings.ReplaceAll(fmt.Sprintf(threeSites, hubLine, version), "@EXTRA@", fmt.Sprint(portB)))
		pushHTTP.CloseIdleConnections()
	}
	reload("", "two")
	if st, v := getBody(t, tc.URL("/version")); st != 200 || v != "two" {
		t.Fatalf("reload did not apply: %d %q", st, v)
	}
	if n := pub(hostA, `{"userId":"dave","message":"after reload"}`); n != 1 {
		t.Fatalf("after reload: delivered %d to dave on site A, want 1", n)
	}
	expectType(t, dave, "message")

	// Positive control: the same hub name on every site shares it.
	reload("hub shared", "three")
	a, b, c = sub(hostA, "alice"), sub(hostB, "bob"), sub(hostC, "carol")
	if n := pub(hostB, `{"broadcast":true,"message":"to all"}`); n != 3 {
		t.Fatalf("broadcast on a named shared hub: delivered %d, want 3", n)
	}
	for _, s := range []*websocket.Conn{a, b, c} {
		expectType(t, s, "message")
	}
	if names := hubNames(t, tc, ""); len(names) != 1 || names[0] != "shared" {
		t.Fatalf("hubs after naming one: %q", names)
	}
}

// hubNames lists the hubs the admin API reports (only hub, when given).
func hubNames(t *testing.T, tc *testCaddy, hub string) []string {
	t.Helper()
	path := "/websocket_push/stats"
	if hub != "" {
		path += "?hub=" + url.QueryEscape(hub)
	}
	st, body := tc.Admin("GET", path, nil)
	var stats []struct{ Hub string }
	if st != 200 || json.Unmarshal(body, &stats) != nil {
		t.Fatalf("stats %s: %d %s", path, st, body)
	}
	var out []string
	for _, s := range stats {
		out = append(out, s.Hub)
	}
	sort.Strings(out)
	return out
}
