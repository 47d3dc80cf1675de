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
	used     map[string]spent
	inserted int
}

// spent is a single-use ticket id: reserved by a request that is still
// checking capacity and dialling, or used until the time given.
type spent struct {
	until    time.Time
	reserved bool
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
	v := &TicketVerifier{key: key, used: make(map[string]spent)}
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

// Verify checks the ticket and returns the target it names, spending a
// single-use ticket at once. Reserve is for callers that may still refuse.
func (v *TicketVerifier) Verify(ticket string) (Target, error) {
	t, r, err := v.Reserve(ticket)
	r.Commit()
	return t, err
}

// Reserve checks the ticket and returns the target it names. A single-use
// ticket (one with "jti") is reserved: until Commit or Release, every
// other use is refused, so concurrent replays cannot both pass. Commit
// once the tunnel is established; Release when the request is refused
// after all (allow-list, capacity, dial), which leaves the ticket valid.
func (v *TicketVerifier) Reserve(ticket string) (Target, *Reservation, error) {
	var c ticketClaims
	if _, err := v.parser.ParseWithClaims(ticket, &c, v.key.Keyfunc); err != nil {
		return Target{}, nil, fmt.Errorf("%w: %w", ErrBadTicket, err)
	}
	t, err := c.target()
	if err != nil {
		return Target{}, nil, fmt.Errorf("%w: %w", ErrBadTicket, err)
	}
	if c.ID == "" {
		return t, nil, nil
	}
	if err := v.reserve(c.ID); err != nil {
		return Target{}, nil, err
	}
	return t, &Reservation{v: v, id: c.ID, exp: c.ExpiresAt.Time}, nil
}

// Reservation holds a single-use ticket between Reserve and its outcome.
// Its methods do nothing on a nil Reservation (a ticket without "jti") or
// after the first call.
type Reservation struct {
	v    *TicketVerifier
	id   string
	exp  time.Time
	done bool
}

// Commit spends the ticket: it stays refused until it expires.
func (r *Reservation) Commit() {
	if r == nil || r.done {
		return
	}
	r.done = true
	r.v.commit(r.id, r.exp)
}

// Release gives the ticket back unspent.
func (r *Reservation) Release() {
	if r == nil || r.done {
		return
	}
	r.done = true
	r.v.mu.Lock()
	if e, ok := r.v.used[r.id]; ok && e.reserved {
		delete(r.v.used, r.id)
	}
	r.v.mu.Unlock()
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

// reserve refuses an id that is reserved or spent, and reserves it.
func (v *TicketVerifier) reserve(id string) error {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.used[id]; ok && (e.reserved || now.Before(e.until)) {
		return fmt.Errorf("%w: ticket %q already used", ErrBadTicket, id)
	}
	v.used[id] = spent{reserved: true}
	v.inserted++
	if v.inserted%1024 == 0 {
		for k, e := range v.used {
			if !e.reserved && now.After(e.until) {
				delete(v.used, k)
			}
		}
	}
	return nil
}

// commit marks a reserved id used until exp.
func (v *TicketVerifier) commit(id string, exp time.Time) {
	v.mu.Lock()
	v.used[id] = spent{until: exp.Add(time.Minute)} // outlive the leeway
	v.mu.Unlock()
}
