package auth

import (
	"context"
	"fmt"
	"unicode"
)

// MaxUserLength bounds user ids taken verbatim from a token.
const MaxUserLength = 256

// TokenIsUser is the classic service's mode: the token itself is the user
// id, with no check at all. Anyone can claim to be anyone, so it only suits
// trusted networks or demos, and the Caddy glue enables it only when
// configured explicitly. Anonymous subscribers need no verifier: the glue
// connects them with user "" without calling one.
type TokenIsUser struct{}

// Verify returns the token as the user id. An empty token, one longer than
// MaxUserLength, or one holding control characters or spaces is refused, so
// user ids stay printable in stats, logs and admin calls.
func (TokenIsUser) Verify(_ context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("empty token: %w", ErrUnauthorized)
	}
	if len(token) > MaxUserLength {
		return Identity{}, fmt.Errorf("token longer than %d bytes: %w", MaxUserLength, ErrUnauthorized)
	}
	for _, r := range token {
		if r == unicode.ReplacementChar || unicode.IsControl(r) || unicode.IsSpace(r) {
			return Identity{}, fmt.Errorf("token holds a control, space or invalid character: %w", ErrUnauthorized)
		}
	}
	return Identity{User: token}, nil
}

// Interface guard.
var _ Verifier = TokenIsUser{}
