package caddyws

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	"github.com/caddyws/caddyws/broker/memory"
	"github.com/caddyws/caddyws/internal/push/auth"
)

// PushAuth says who a subscriber is. Exactly one mode per handler.
type PushAuth struct {
	// Mode is one of:
	//   - jwt: the token is a JWT (see jwt);
	//   - token_file: the token is looked up in a file of "token: user" lines;
	//   - callback: an HTTP service answers a token with a user id;
	//   - token_is_user: the token is the user id (the classic service's
	//     mode; only for trusted networks);
	//   - caddy: the user id comes from Caddy's own authentication (e.g.
	//     basic_auth, forward_auth) through the placeholder in user; a
	//     request on which no auth handler set it is refused (401);
	//   - anonymous: no identity; subscribers get event and broadcast
	//     messages only.
	// Required: there is no default mode.
	Mode string `json:"mode"`
	// JWT configures the jwt mode. Default: none.
	JWT *PushJWT `json:"jwt,omitempty"`
	// TokenFile is the file of the token_file mode; it is re-read when it
	// changes. Default: none.
	TokenFile string `json:"token_file,omitempty"`
	// Callback configures the callback mode. Default: none.
	Callback *PushCallback `json:"callback,omitempty"`
	// User is the placeholder the caddy mode takes the user id from: one
	// placeholder and nothing else. {http.auth.user.id} is what basic_auth
	// and other authentication handlers set; behind forward_auth with
	// copy_headers X-User, use {http.reverse_proxy.header.X-User} (the auth
	// service's answer, which a client cannot send). An upgrade on which
	// the placeholder is unset, empty, longer than 256 bytes or holds
	// spaces or control characters is refused with 401 before the upgrade.
	// Default: {http.auth.user.id}.
	User string `json:"user,omitempty"`
	// TokenParam is the query parameter a non-browser client may carry its
	// token in (browsers send it in the first frame, which keeps it out of
	// access logs). The Authorization: Bearer header works too.
	// Default: token.
	TokenParam string `json:"token_param,omitempty"`
	// TokenCookie is the cookie a subscriber may carry its token in: what
	// a browser's EventSource, which cannot set headers, can send without
	// putting the token in the URL (set it HttpOnly, Secure,
	// SameSite=Strict). The query parameter and the Authorization header
	// come first. Default: caddyws_token.
	TokenCookie string `json:"token_cookie,omitempty"`

	userVar string // the caddy mode's placeholder name, without braces
}

// PushJWT configures JWT verification.
type PushJWT struct {
	// Alg, when set, is the only accepted signing algorithm (HS256, RS256,
	// ES256, ...) and must agree with the key. Default: from the key (an
	// RSA key: RS* and PS*; an EC key: the ES* of its curve; Ed25519:
	// EdDSA; a secret: the HS* it is long enough for).
	Alg string `json:"alg,omitempty"`
	// Key is the key itself: a PEM public key or certificate, or else a
	// shared secret of at least 32 bytes (48 for HS384, 64 for HS512;
	// surrounding white space trimmed). Private keys, JSON Web Keys and SSH
	// keys are refused. Placeholders such as {env.PUSH_JWT_SECRET} are
	// expanded. Default: none (set key or key_file).
	Key string `json:"key,omitempty"`
	// KeyFile is a file holding the key, instead of Key. Default: none.
	KeyFile string `json:"key_file,omitempty"`
	// UserClaim is the claim holding the user id. Default: sub.
	UserClaim string `json:"user_claim,omitempty"`
	// EventsClaim is the claim listing the events the token may subscribe
	// to (absent: any). Default: events.
	EventsClaim string `json:"events_claim,omitempty"`
	// Issuer, when set, must equal the iss claim. Default: none.
	Issuer string `json:"issuer,omitempty"`
	// Audience, when set, must be among the aud claim's values.
	// Default: none.
	Audience string `json:"audience,omitempty"`
	// Leeway tolerates clock skew. Default: 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// Require lists claims that must hold a value, e.g. {"role":
	// "publisher"}. Default: none.
	Require map[string]string `json:"require,omitempty"`
}

// PushCallback configures the callback mode.
type PushCallback struct {
	// URL receives the token and answers with the user id. Required.
	URL string `json:"url"`
	// Method is POST (JSON body {"token":"..."}) or GET (query parameter
	// token). Default: POST.
	Method string `json:"method,omitempty"`
	// Header is sent with every call, e.g. a key the service expects;
	// placeholders such as {env.X} are expanded. Default: none.
	Header map[string][]string `json:"header,omitempty"`
	// Timeout bounds one call; a timeout or a 5xx closes the connection
	// with 1013 (try again later). Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// CacheTTL keeps accepted tokens this long. Default: 0 (off).
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`
}

// setDefaults fills the mode's defaults; the verifiers' own settings
// (claims, leeway, callback timeout) are defaulted by package auth.
func (a *PushAuth) setDefaults() {
	if a.TokenParam == "" {
		a.TokenParam = "token"
	}
	if a.TokenCookie == "" {
		a.TokenCookie = "caddyws_token"
	}
	if a.Mode == "caddy" && a.User == "" {
		a.User = "{http.auth.user.id}"
	}
}

func (j *PushJWT) config(repl *caddy.Replacer) auth.JWTConfig {
	cfg := auth.JWTConfig{
		Algorithm:   j.Alg,
		KeyFile:     repl.ReplaceKnown(j.KeyFile, ""),
		UserClaim:   j.UserClaim,
		EventsClaim: j.EventsClaim,
		Issuer:      j.Issuer,
		Audience:    j.Audience,
		Leeway:      time.Duration(j.Leeway),
		Require:     j.Require,
	}
	if j.Key != "" {
		cfg.Key = []byte(repl.ReplaceKnown(j.Key, ""))
	}
	return cfg
}

// verifier builds the token verifier of the mode (nil for modes without
// tokens).
func (a *PushAuth) verifier(repl *caddy.Replacer, logger *zap.Logger) (auth.Verifier, error) {
	switch a.Mode {
	case "jwt":
		if a.JWT == nil {
			return nil, errors.New("jwt mode needs a jwt block (key or key_file)")
		}
		return auth.NewJWT(a.JWT.config(repl))
	case "token_file":
		return auth.NewTokenFile(auth.TokenFileConfig{Path: repl.ReplaceKnown(a.TokenFile, ""), Logger: logger})
	case "callback":
		return newCallbackVerifier(a.Callback, repl)
	case "token_is_user":
		return auth.TokenIsUser{}, nil
	case "caddy":
		name, err := userPlaceholder(a.User)
		if err != nil {
			return nil, err
		}
		a.userVar = name
		if strings.HasPrefix(name, reqHeaderPrefix) {
			logger.Warn("auth caddy takes the user from a request header, which any client can send: every request this route matches must pass through forward_auth with copy_headers for that header; {http.reverse_proxy.header.*} cannot be forged",
				zap.String("user", a.User))
		}
		return nil, nil
	case "anonymous":
		return nil, nil
	}
	return nil, fmt.Errorf("unknown mode %q (want jwt, token_file, callback, token_is_user, caddy or anonymous)", a.Mode)
}

const (
	reqHeaderPrefix  = "http.request.header."
	respHeaderPrefix = "http.reverse_proxy.header."
)

// userPlaceholder checks that s is exactly one placeholder and returns its
// name. Text around a placeholder, or a second one, would let an unset
// placeholder become part of a user id (Caddy leaves unknown placeholders
// as literal text), so it is refused. reverse_proxy stores response headers
// under their canonical names: the header part is canonicalized so that
// {http.reverse_proxy.header.x-user} finds X-User.
func userPlaceholder(s string) (string, error) {
	if len(s) < 3 || s[0] != '{' || s[len(s)-1] != '}' || strings.ContainsAny(s[1:len(s)-1], "{}") {
		return "", fmt.Errorf("caddy mode: user must be one placeholder such as {http.auth.user.id}, got %q", s)
	}
	name := s[1 : len(s)-1]
	if h, ok := strings.CutPrefix(name, respHeaderPrefix); ok && h != "" {
		name = respHeaderPrefix + http.CanonicalHeaderKey(h)
	}
	return name, nil
}

// caddyUser returns the user an auth handler put in the caddy mode's
// placeholder. Unset and empty both mean no handler authenticated the
// request: the caller refuses it rather than connect a shared user.
func (a *PushAuth) caddyUser(r *http.Request) (string, error) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return "", errors.New("no authenticated user on this request")
	}
	user, ok := repl.GetString(a.userVar)
	if !ok || user == "" {
		return "", errors.New("no authenticated user on this request")
	}
	// The same rules as a token taken as a user id: ids stay printable
	// and bounded in stats, logs and admin calls.
	if _, err := (auth.TokenIsUser{}).Verify(r.Context(), user); err != nil {
		return "", fmt.Errorf("the authenticated user id is unusable (empty, over %d bytes, or holding spaces or control characters)", auth.MaxUserLength)
	}
	return user, nil
}

// newBroker asks the configured factory for the hub's broker; without one,
// the in-process memory broker serves a single node.
func newBroker(f BrokerFactory, h broker.History, logger *zap.Logger) (broker.Broker, error) {
	if f == nil {
		return memory.New(h, logger.Named("broker")), nil
	}
	b, err := f.NewBroker(h, logger.Named("broker"))
	if err != nil {
		return nil, fmt.Errorf("creating broker: %w", err)
	}
	return b, nil
}

// newCallbackVerifier builds the callback mode's verifier.
func newCallbackVerifier(c *PushCallback, repl *caddy.Replacer) (auth.Verifier, error) {
	if c == nil || c.URL == "" {
		return nil, errors.New("callback mode needs a url")
	}
	cfg := auth.CallbackConfig{
		URL:      repl.ReplaceKnown(c.URL, ""),
		Method:   c.Method,
		Timeout:  time.Duration(c.Timeout),
		CacheTTL: time.Duration(c.CacheTTL),
	}
	if len(c.Header) > 0 {
		cfg.Header = http.Header{}
		for k, vs := range c.Header {
			for _, v := range vs {
				cfg.Header.Add(k, repl.ReplaceKnown(v, ""))
			}
		}
	}
	return auth.NewCallback(cfg)
}
