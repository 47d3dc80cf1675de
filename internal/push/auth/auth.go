// Package auth holds the ways a websocket_push subscriber (or publisher) is
// identified from a token: signed JWTs, a token file, an HTTP callback, and
// the token-is-the-user mode. Identities from Caddy's own auth handlers are
// resolved by the Caddy glue and need no verifier.
package auth

import (
	"context"
	"errors"
	"time"
)

// Identity is who a token belongs to.
type Identity struct {
	// User is the user id ("" for anonymous).
	User string
	// Events lists the events the identity may subscribe to; nil means any.
	Events []string
	// Expires is when the identity stops being valid (zero: never). The hub
	// closes the connection with 4001 when it passes.
	Expires time.Time
}

// Verifier maps a token to an identity.
type Verifier interface {
	// Verify returns the identity for token, an error wrapping
	// ErrUnauthorized when the token is unknown, expired, forged or
	// malformed, or an error wrapping ErrUnavailable when the verifier could
	// not decide (e.g. the callback service is down).
	Verify(ctx context.Context, token string) (Identity, error)
}

var (
	// ErrUnauthorized means the token was checked and refused.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable means the token could not be checked right now.
	ErrUnavailable = errors.New("verifier unavailable")
)
