package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyws/caddyws/internal/jwtkey"
)

// JWTConfig configures a JWT verifier. Exactly one of Key and KeyFile is set.
type JWTConfig struct {
	// Algorithm, when set, is the only signing algorithm accepted (HS256,
	// HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384,
	// ES512 or EdDSA) and must agree with the key. Unset, the key decides:
	// see package jwtkey. "none" is never accepted.
	Algorithm string
	// Key is the key material itself: a PEM public key or certificate, or
	// else a shared secret; see package jwtkey for what is refused. The
	// Caddy glue fills it from a value such as {env.PUSH_JWT_SECRET}.
	Key []byte
	// KeyFile is a file holding the key material, as for Key.
	KeyFile string
	// UserClaim names the claim holding the user id (a string or a number);
	// a dotted path reaches into nested objects. Default: sub.
	UserClaim string
	// EventsClaim names the claim holding the events the token may
	// subscribe to: a list of strings, or one string. An absent claim means
	// any event; an empty list means none. Default: events.
	EventsClaim string
	// Issuer, when set, must equal the iss claim.
	Issuer string
	// Audience, when set, must be one of the aud claim's values.
	Audience string
	// Leeway tolerates clock skew on exp, nbf and iat. Default: 30s.
	Leeway time.Duration
	// AllowNoExpiry accepts tokens without an exp claim (such tokens never
	// expire). Default: false (exp is required).
	AllowNoExpiry bool
	// UserOptional accepts tokens without the user claim (Identity.User is
	// then ""), e.g. for publisher tokens. Default: false.
	UserOptional bool
	// Require lists claims that must be present with the given value: the
	// claim equals it, or is a list containing it, or is a space-separated
	// string (like OAuth's scope) containing it. Example for publisher
	// tokens: {"role": "publisher"}. Default: none.
	Require map[string]string
}

// MaxTokenLength bounds the tokens any verifier looks at; longer ones are
// refused before any parsing or network call.
const MaxTokenLength = 16 << 10

// JWT verifies signed JSON Web Tokens. It is safe for concurrent use.
type JWT struct {
	cfg    JWTConfig
	key    *jwtkey.Key
	parser *jwt.Parser
	now    func() time.Time
}

// NewJWT checks cfg, loads the key and returns the verifier.
func NewJWT(cfg JWTConfig) (*JWT, error) {
	if (len(cfg.Key) == 0) == (cfg.KeyFile == "") {
		return nil, errors.New("jwt: exactly one of key and key file is required")
	}
	var key *jwtkey.Key
	var err error
	if cfg.KeyFile != "" {
		key, err = jwtkey.LoadFile(cfg.KeyFile, cfg.Algorithm)
	} else {
		key, err = jwtkey.Load(cfg.Key, cfg.Algorithm, "key")
	}
	if err != nil {
		return nil, fmt.Errorf("jwt: %w", err)
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	if cfg.EventsClaim == "" {
		cfg.EventsClaim = "events"
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("jwt: leeway must not be negative")
	}
	v := &JWT{cfg: cfg, key: key, now: time.Now}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(key.Methods),
		jwt.WithJSONNumber(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	}
	if !cfg.AllowNoExpiry {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Verify checks the token's signature, algorithm and registered claims and
// returns the identity it names. Every refusal wraps ErrUnauthorized.
func (v *JWT) Verify(_ context.Context, token string) (Identity, error) {
	if token == "" || len(token) > MaxTokenLength {
		return Identity{}, fmt.Errorf("jwt: token empty or longer than %d bytes: %w", MaxTokenLength, ErrUnauthorized)
	}
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, v.key.Keyfunc)
	if err != nil {
		return Identity{}, fmt.Errorf("jwt: %w: %w", ErrUnauthorized, err)
	}
	var id Identity
	if raw, ok := lookupClaim(claims, v.cfg.UserClaim); ok {
		user, ok := claimString(raw)
		if !ok {
			return Identity{}, fmt.Errorf("jwt: claim %q is not a string or number: %w", v.cfg.UserClaim, ErrUnauthorized)
		}
		id.User = user
	}
	if id.User == "" && !v.cfg.UserOptional {
		return Identity{}, fmt.Errorf("jwt: claim %q missing or empty: %w", v.cfg.UserClaim, ErrUnauthorized)
	}
	// Only an absent events claim means any event: a null one is refused,
	// not read as absent, so that a token minted with a missing list does
	// not open every event.
	if raw, ok := lookupClaim(claims, v.cfg.EventsClaim); ok || claimIsNull(claims, v.cfg.EventsClaim) {
		events, ok := claimStrings(raw)
		if !ok {
			return Identity{}, fmt.Errorf("jwt: claim %q is not a list of strings: %w", v.cfg.EventsClaim, ErrUnauthorized)
		}
		id.Events = events
	}
	for name, want := range v.cfg.Require {
		raw, ok := lookupClaim(claims, name)
		if !ok || !claimContains(raw, want) {
			return Identity{}, fmt.Errorf("jwt: claim %q does not hold %q: %w", name, want, ErrUnauthorized)
		}
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.Expires = exp.Time.Add(v.cfg.Leeway)
	}
	return id, nil
}

// lookupClaim finds a top-level claim by name, or else follows a dotted
// path through nested objects (e.g. "realm_access.roles").
func lookupClaim(claims jwt.MapClaims, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, v != nil
	}
	var cur any = map[string]any(claims)
	for part := range strings.SplitSeq(name, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// claimIsNull reports whether name is present in claims with a null value.
func claimIsNull(claims jwt.MapClaims, name string) bool {
	if v, ok := claims[name]; ok {
		return v == nil
	}
	var cur any = map[string]any(claims)
	for part := range strings.SplitSeq(name, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = obj[part]; !ok {
			return false
		}
	}
	return cur == nil
}

func claimString(v any) (string, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case json.Number:
		return s.String(), true
	}
	return "", false
}

func claimStrings(v any) ([]string, bool) {
	switch s := v.(type) {
	case string:
		return []string{s}, true
	case []any:
		out := make([]string, 0, len(s))
		for _, e := range s {
			str, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, str)
		}
		return out, true
	}
	return nil, false
}

func claimContains(v any, want string) bool {
	switch s := v.(type) {
	case string:
		return s == want || (strings.Contains(s, " ") && slices.Contains(strings.Fields(s), want))
	case json.Number:
		return s.String() == want
	case bool:
		return fmt.Sprint(s) == want
	case []any:
		for _, e := range s {
			if str, ok := claimString(e); ok && str == want {
				return true
			}
		}
	}
	return false
}

// SameKey reports whether o verifies with the same key material as v,
// whatever its encoding or source.
func (v *JWT) SameKey(o *JWT) bool { return v.key.Equal(o.key) }

// Interface guard.
var _ Verifier = (*JWT)(nil)
