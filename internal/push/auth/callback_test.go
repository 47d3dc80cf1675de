package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tokenService is a real HTTP callback service: it answers per token.
type tokenService struct {
	srv      *httptest.Server
	calls    atomic.Int64
	newConns atomic.Int64
	lastReq  atomic.Pointer[http.Request]
	release  chan struct{} // "slow" blocks until closed
}

func newTokenService(t *testing.T) *tokenService {
	ts := &tokenService{release: make(chan struct{})}
	ts.srv = httptest.NewUnstartedServer(http.HandlerFunc(ts.serve))
	ts.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			ts.newConns.Add(1)
		}
	}
	ts.srv.Start()
	t.Cleanup(func() {
		select {
		case <-ts.release:
		default:
			close(ts.release)
		}
		ts.srv.Close()
	})
	return ts
}

func (ts *tokenService) serve(w http.ResponseWriter, r *http.Request) {
	ts.calls.Add(1)
	ts.lastReq.Store(r.Clone(context.Background()))
	token := r.URL.Query().Get("token")
	if r.Method == http.MethodPost {
		var body struct{ Token string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		token = body.Token
	}
	switch token {
	case "good":
		_, _ = w.Write([]byte(`{"userId":"alice","events":["news","chat"]}`))
	case "good-user-field":
		_, _ = w.Write([]byte(`{"user":"bob"}`))
	case "expiring":
		_, _ = w.Write([]byte(`{"userId":"carol","expires":` + jsonInt(time.Now().Add(time.Hour).Unix()) + `}`))
	case "expired":
		_, _ = w.Write([]byte(`{"userId":"carol","expires":` + jsonInt(time.Now().Add(-time.Hour).Unix()) + `}`))
	case "no-user":
		_, _ = w.Write([]byte(`{"events":[]}`))
	case "null-events":
		_, _ = w.Write([]byte(`{"userId":"dave","events":null}`))
	case "events-not-a-list":
		_, _ = w.Write([]byte(`{"userId":"dave","events":"news"}`))
	case "garbage":
		_, _ = w.Write([]byte(`<html>oops`))
	case "forbidden":
		w.WriteHeader(http.StatusForbidden)
	case "unknown":
		http.Error(w, strings.Repeat("x", 1000), http.StatusNotFound)
	case "error":
		w.WriteHeader(http.StatusInternalServerError)
	case "busy":
		w.WriteHeader(http.StatusServiceUnavailable)
	case "redirect":
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	case "slow":
		select {
		case <-ts.release:
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte(`{"userId":"late"}`))
	default:
		w.WriteHeader(http.StatusUnauthorized)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestCallbackVerify(t *testing.T) {
	ts := newTokenService(t)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // a port nobody listens on any more

	tests := []struct {
		name   string
		cfg    CallbackConfig
		token  string
		user   string
		events []string
		err    error
	}{
		{"post good", CallbackConfig{}, "good", "alice", []string{"news", "chat"}, nil},
		{"get good", CallbackConfig{Method: "get"}, "good", "alice", []string{"news", "chat"}, nil},
		{"user field", CallbackConfig{}, "good-user-field", "bob", nil, nil},
		{"expiry in the future", CallbackConfig{}, "expiring", "carol", nil, nil},
		{"already expired", CallbackConfig{}, "expired", "", nil, ErrUnauthorized},
		{"401 unknown token", CallbackConfig{}, "nope", "", nil, ErrUnauthorized},
		{"403", CallbackConfig{}, "forbidden", "", nil, ErrUnauthorized},
		{"404", CallbackConfig{}, "unknown", "", nil, ErrUnauthorized},
		{"200 without user", CallbackConfig{}, "no-user", "", nil, ErrUnauthorized},
		{"events null is not any event", CallbackConfig{}, "null-events", "", nil, ErrUnauthorized},
		{"events not a list", CallbackConfig{}, "events-not-a-list", "", nil, ErrUnauthorized},
		{"200 not json", CallbackConfig{}, "garbage", "", nil, ErrUnavailable},
		{"500", CallbackConfig{}, "error", "", nil, ErrUnavailable},
		{"503", CallbackConfig{}, "busy", "", nil, ErrUnavailable},
		{"redirect not followed", CallbackConfig{}, "redirect", "", nil, ErrUnavailable},
		{"slow service times out", CallbackConfig{Timeout: 200 * time.Millisecond}, "slow", "", nil, ErrUnavailable},
		{"service down", CallbackConfig{URL: downURL}, "good", "", nil, ErrUnavailable},
		{"empty token never sent", CallbackConfig{}, "", "", nil, ErrUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.URL == "" {
				tc.cfg.URL = ts.srv.URL + "/auth"
			}
			v, err := NewCallback(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			id, err := v.Verify(context.Background(), tc.token)
			if time.Since(start) > 3*time.Second {
				t.Errorf("Verify took %v", time.Since(start))
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if tc.token != "" && strings.Contains(err.Error(), tc.token+"&") {
					t.Errorf("error leaks the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.User != tc.user || !reflect.DeepEqual(id.Events, tc.events) {
				t.Fatalf("got %+v, want user %q events %v", id, tc.user, tc.events)
			}
		})
	}
}

func TestCallbackSendsHeadersAndReusesConnections(t *testing.T) {
	ts := newTokenService(t)
	v, err := NewCallback(CallbackConfig{URL: ts.srv.URL, Header: http.Header{"Authorization": {"Bearer caddy-secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		tok := []string{"good", "nope", "unknown", "error"}[i%4]
		if _, err := v.Verify(context.Background(), tok); tok == "good" && err != nil {
			t.Fatal(err)
		}
	}
	if got := ts.lastReq.Load().Header.Get("Authorization"); got != "Bearer caddy-secret" {
		t.Fatalf("Authorization header = %q", got)
	}
	// Every answer body (200, 401, 404 with a body, 500) was drained and
	// closed, so 30 sequential calls ride one keep-alive connection.
	if n := ts.newConns.Load(); n != 1 {
		t.Fatalf("%d connections for 30 sequential calls, want 1 (a body was not drained/closed)", n)
	}
}

func TestCallbackCache(t *testing.T) {
	ts := newTokenService(t)
	v, err := NewCallback(CallbackConfig{URL: ts.srv.URL, CacheTTL: time.Minute, NegativeCacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Pointer[time.Time]
	t0 := time.Now()
	now.Store(&t0)
	v.now = func() time.Time { return *now.Load() }
	ctx := context.Background()
	for range 5 {
		id, err := v.Verify(ctx, "good")
		if err != nil || id.User != "alice" {
			t.Fatalf("%+v %v", id, err)
		}
		id.Events[0] = "mutated" // must not reach the cache
		if _, err := v.Verify(ctx, "nope"); !errors.Is(err, ErrUnauthorized) {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, "error"); !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
	}
	// good and nope cached after the first call; error never cached.
	if got := ts.calls.Load(); got != 2+5 {
		t.Fatalf("service called %d times, want 7", got)
	}
	if id, _ := v.Verify(ctx, "good"); id.Events[0] != "news" {
		t.Fatalf("cached identity was mutated: %v", id.Events)
	}
	later := t0.Add(2 * time.Minute)
	now.Store(&later)
	if _, err := v.Verify(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	if got := ts.calls.Load(); got != 8 {
		t.Fatalf("expired cache entry not refreshed: %d calls, want 8", got)
	}
}

func TestCallbackCacheBounded(t *testing.T) {
	ts := newTokenService(t)
	v, _ := NewCallback(CallbackConfig{URL: ts.srv.URL, NegativeCacheTTL: time.Minute, CacheSize: 50})
	for i := range 200 {
		_, _ = v.Verify(context.Background(), "tok"+jsonInt(int64(i)))
		v.mu.Lock()
		n := len(v.cache)
		v.mu.Unlock()
		if n > 50 {
			t.Fatalf("cache holds %d entries, bound is 50", n)
		}
	}
}

func TestCallbackConcurrentSameTokenShareOneRequest(t *testing.T) {
	ts := newTokenService(t)
	v, _ := NewCallback(CallbackConfig{URL: ts.srv.URL, Timeout: 5 * time.Second})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			id, err := v.Verify(context.Background(), "slow")
			if err == nil && id.User != "late" {
				err = errors.New("wrong user " + id.User)
			}
			errs <- err
		})
	}
	waitFor(t, func() bool { return ts.calls.Load() >= 1 })
	time.Sleep(50 * time.Millisecond)
	close(ts.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := ts.calls.Load(); got != 1 {
		t.Fatalf("%d requests for 20 concurrent checks of one token, want 1", got)
	}
}

func TestCallbackCallerCancelIsUnavailable(t *testing.T) {
	ts := newTokenService(t)
	v, _ := NewCallback(CallbackConfig{URL: ts.srv.URL, Timeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := v.Verify(ctx, "slow"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancelled caller waited %v", d)
	}
}

func TestNewCallbackRejectsBadConfig(t *testing.T) {
	for _, cfg := range []CallbackConfig{
		{URL: ""}, {URL: "ftp://x/"}, {URL: "/relative"}, {URL: "http://x", Method: "PUT"},
		{URL: "http://x", Timeout: -1}, {URL: "http://x", CacheTTL: -time.Second},
	} {
		if _, err := NewCallback(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
