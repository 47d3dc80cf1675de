package tunnel

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyws/caddyws/internal/jwtkey"
)

// ErrBadTicket wraps every reason a ticket is refused (bad signature,
// expired, not yet valid, malformed, replayed): the handler answers 401.
var ErrBadTicket = errors.New("invalid ticket")

// TicketVerifier checks signed tickets: JWTs that name their target, the way
// websockify's JWT token plugin reads them — claims "host" and "port" — or
// with one "target" claim ("host:port" or "unix/<path>"). Tickets must carry
// "exp"; "nbf" and "iat" are honoured. A ticket with a "jti" is single-use:
// the id is remembered until the ticket expires and a second use is refused.
type TicketVerifier struct {
	key    *jwtkey.Key
	parser *jwt.Parser

	mu       sync.Mutex
	used     map[string]time.Time
	inserted int
}

// NewTicketVerifier takes the key material, checked by package jwtkey (a
// PEM public key or certificate, or a shared secret; private keys, JSON Web
// Keys and SSH keys are refused), the algorithm ("" for those the key
// allows) and source, which names the material in errors.
func NewTicketVerifier(material []byte, alg, source string, leeway time.Duration) (*TicketVerifier, error) {
	key, err := jwtkey.Load(material, alg, source)
	if err != nil {
		return nil, fmt.Errorf("jwt_key: %w", err)
	}
	v := &TicketVerifier{key: key, used: make(map[string]time.Time)}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(key.Methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
	)
	return v, nil
}

// ticketClaims are the claims a ticket may carry.
type ticketClaims struct {
	jwt.RegisteredClaims
	Host   string `json:"host,omitempty"`
	Port   any    `json:"port,omitempty"` // websockify writes a number; strings are accepted
	Target string `json:"target,omitempty"`
}

// Verify checks the ticket and returns the target it names.
func (v *TicketVerifier) Verify(ticket string) (Target, error) {
	var c ticketClaims
	if _, err := v.parser.ParseWithClaims(ticket, &c, v.key.Keyfunc); err != nil {
		return Target{}, fmt.Errorf("%w: %w", ErrBadTicket, err)
	}
	t, err := c.target()
	if err != nil {
		return Target{}, fmt.Errorf("%w: %w", ErrBadTicket, err)
	}
	if c.ID != "" {
		if err := v.spend(c.ID, c.ExpiresAt.Time); err != nil {
			return Target{}, err
		}
	}
	return t, nil
}

func (c ticketClaims) target() (Target, error) {
	if c.Target != "" {
		return ParseTarget(c.Target)
	}
	if c.Host == "" {
		return Target{}, errors.New("ticket names no target (claims host+port or target)")
	}
	var port string
	switch p := c.Port.(type) {
	case float64:
		port = strconv.FormatFloat(p, 'f', -1, 64)
	case string:
		port = p
	default:
		return Target{}, errors.New("ticket has no valid port claim")
	}
	return ParseTarget(joinHostPort(c.Host, port))
}

func joinHostPort(host, port string) string {
	if bytes.IndexByte([]byte(host), ':') >= 0 {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// spend marks a ticket id used until exp, refusing a second use.
func (v *TicketVerifier) spend(id string, exp time.Time) error {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if until, ok := v.used[id]; ok && now.Before(until) {
		return fmt.Errorf("%w: ticket %q already used", ErrBadTicket, id)
	}
	v.used[id] = exp.Add(time.Minute) // outlive the leeway
	v.inserted++
	if v.inserted%1024 == 0 {
		for k, until := range v.used {
			if now.After(until) {
				delete(v.used, k)
			}
		}
	}
	return nil
}
