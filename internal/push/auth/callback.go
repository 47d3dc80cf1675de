package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// CallbackConfig configures a Callback verifier.
type CallbackConfig struct {
	// URL of the service that maps a token to a user.
	URL string
	// Method is POST (the token goes in a JSON body {"token":"..."}) or GET
	// (the token goes in the query parameter "token"; it then shows up in
	// the service's access logs). Default: POST.
	Method string
	// Header is added to every callback request, e.g. an Authorization
	// header the service expects from Caddy. Default: none.
	Header http.Header
	// Timeout bounds one callback request, connection included. Default: 5s.
	Timeout time.Duration
	// CacheTTL keeps accepted tokens this long (never past the identity's
	// expiry), sparing the service a call per reconnect. Default: 0 (off).
	CacheTTL time.Duration
	// NegativeCacheTTL keeps refused tokens this long. Default: 0 (off).
	NegativeCacheTTL time.Duration
	// CacheSize bounds the number of cached tokens. Default: 10000.
	CacheSize int
	// Client sends the requests. Default: a client with its own pooled
	// transport that does not follow redirects.
	Client *http.Client
}

// callbackAnswer is the service's 200 body. "userId" is the classic
// AuthToken hook's name; "user" is accepted too. "expires" is optional,
// in Unix seconds.
type callbackAnswer struct {
	UserID *string `json:"userId"`
	User   *string `json:"user"`
	// Events stays raw so that null (refused) is told from absent (any
	// event).
	Events  json.RawMessage `json:"events"`
	Expires *int64          `json:"expires"`
}

// maxCallbackBody bounds how much of an answer is read.
const maxCallbackBody = 64 << 10

// Callback asks an HTTP service who a token belongs to (the classic
// AuthToken hook, as a service). 200 with a JSON user is an identity;
// 400, 401, 403, 404, 410 and 422 refuse the token (ErrUnauthorized);
// network errors, timeouts, redirects, 429, 5xx, any other status and
// unreadable 200 bodies are ErrUnavailable. Concurrent checks of one token
// share one request.
type Callback struct {
	cfg    CallbackConfig
	client *http.Client
	group  singleflight.Group
	mu     sync.Mutex
	cache  map[[32]byte]cacheEntry
	now    func() time.Time
}

type cacheEntry struct {
	id      Identity
	err     error
	expires time.Time
}

// NewCallback checks cfg and returns the verifier.
func NewCallback(cfg CallbackConfig) (*Callback, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("auth callback: url %q is not an absolute http(s) URL", cfg.URL)
	}
	cfg.Method = strings.ToUpper(cfg.Method)
	if cfg.Method == "" {
		cfg.Method = http.MethodPost
	}
	if cfg.Method != http.MethodPost && cfg.Method != http.MethodGet {
		return nil, fmt.Errorf("auth callback: method %q must be GET or POST", cfg.Method)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Timeout < 0 || cfg.CacheTTL < 0 || cfg.NegativeCacheTTL < 0 || cfg.CacheSize < 0 {
		return nil, errors.New("auth callback: timeout, cache durations and cache size must not be negative")
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10000
	}
	c := &Callback{cfg: cfg, client: cfg.Client, cache: map[[32]byte]cacheEntry{}, now: time.Now}
	if c.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		c.client = &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c, nil
}

// Verify asks the service (or the cache) about token.
func (c *Callback) Verify(ctx context.Context, token string) (Identity, error) {
	if token == "" || len(token) > MaxTokenLength {
		return Identity{}, fmt.Errorf("auth callback: empty or oversized token: %w", ErrUnauthorized)
	}
	key := sha256.Sum256([]byte(token))
	if id, err, ok := c.cached(key); ok {
		return id, err
	}
	// The shared request runs on its own deadline, detached from the first
	// caller, so one caller giving up does not fail the others.
	ch := c.group.DoChan(string(key[:]), func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
		defer cancel()
		id, err := c.call(rctx, token)
		c.store(key, id, err)
		return id, err
	})
	select {
	case res := <-ch:
		id, _ := res.Val.(Identity)
		if id.Events != nil {
			id.Events = append([]string{}, id.Events...)
		}
		return id, res.Err
	case <-ctx.Done():
		return Identity{}, fmt.Errorf("auth callback: %w: %w", ErrUnavailable, ctx.Err())
	}
}

func (c *Callback) call(ctx context.Context, token string) (Identity, error) {
	var body io.Reader
	target := c.cfg.URL
	if c.cfg.Method == http.MethodPost {
		b, _ := json.Marshal(map[string]string{"token": token})
		body = bytes.NewReader(b)
	} else {
		u, _ := url.Parse(c.cfg.URL)
		q := u.Query()
		q.Set("token", token)
		u.RawQuery = q.Encode()
		target = u.String()
	}
	req, err := http.NewRequestWithContext(ctx, c.cfg.Method, target, body)
	if err != nil {
		return Identity{}, fmt.Errorf("auth callback: building request: %w: %w", ErrUnavailable, err)
	}
	for k, vs := range c.cfg.Header {
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		// url.Error carries the URL, never the body; the GET URL holds the
		// token, so report only the configured URL.
		return Identity{}, fmt.Errorf("auth callback %s: %w: %w", c.cfg.URL, ErrUnavailable, unwrapURLError(err))
	}
	defer func() {
		// Drain a bounded amount so the keep-alive connection is reused;
		// a huge body just costs the connection.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxCallbackBody))
		resp.Body.Close()
	}()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone, http.StatusUnprocessableEntity:
		return Identity{}, fmt.Errorf("auth callback answered %d: %w", resp.StatusCode, ErrUnauthorized)
	default:
		return Identity{}, fmt.Errorf("auth callback answered %d: %w", resp.StatusCode, ErrUnavailable)
	}
	var ans callbackAnswer
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxCallbackBody))
	if err := dec.Decode(&ans); err != nil {
		return Identity{}, fmt.Errorf("auth callback: unreadable 200 answer: %w: %w", ErrUnavailable, err)
	}
	var id Identity
	switch {
	case ans.UserID != nil:
		id.User = *ans.UserID
	case ans.User != nil:
		id.User = *ans.User
	}
	if id.User == "" {
		return Identity{}, fmt.Errorf("auth callback answered 200 without a user id: %w", ErrUnauthorized)
	}
	if ans.Events != nil {
		var events []string
		if err := json.Unmarshal(ans.Events, &events); err != nil || events == nil {
			return Identity{}, fmt.Errorf("auth callback: events is not a list of strings: %w", ErrUnauthorized)
		}
		id.Events = events
	}
	if ans.Expires != nil && *ans.Expires > 0 {
		id.Expires = time.Unix(*ans.Expires, 0)
		if !id.Expires.After(c.now()) {
			return Identity{}, fmt.Errorf("auth callback: identity already expired: %w", ErrUnauthorized)
		}
	}
	return id, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (c *Callback) cached(key [32]byte) (Identity, error, bool) {
	if c.cfg.CacheTTL == 0 && c.cfg.NegativeCacheTTL == 0 {
		return Identity{}, nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cache[key]
	if !ok {
		return Identity{}, nil, false
	}
	if !c.now().Before(e.expires) {
		delete(c.cache, key)
		return Identity{}, nil, false
	}
	id := e.id
	if id.Events != nil {
		id.Events = append([]string{}, id.Events...)
	}
	return id, e.err, true
}

// store caches answers: identities for CacheTTL (capped at their expiry),
// refusals for NegativeCacheTTL; an unavailable service is never cached.
func (c *Callback) store(key [32]byte, id Identity, err error) {
	ttl := c.cfg.CacheTTL
	if err != nil {
		if !errors.Is(err, ErrUnauthorized) {
			return
		}
		ttl = c.cfg.NegativeCacheTTL
	}
	if ttl == 0 {
		return
	}
	now := c.now()
	exp := now.Add(ttl)
	if !id.Expires.IsZero() && id.Expires.Before(exp) {
		exp = id.Expires
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cache) >= c.cfg.CacheSize {
		for k, e := range c.cache {
			if !now.Before(e.expires) {
				delete(c.cache, k)
			}
		}
		// Still full: drop a tenth, arbitrary entries (map order is random),
		// which costs only extra callback requests and keeps this scan rare.
		for k := range c.cache {
			if len(c.cache) < c.cfg.CacheSize-c.cfg.CacheSize/10 {
				break
			}
			delete(c.cache, k)
		}
	}
	c.cache[key] = cacheEntry{id: id, err: err, expires: exp}
}

// Interface guard.
var _ Verifier = (*Callback)(nil)
