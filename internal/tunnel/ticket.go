package tunnel

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrBadTicket wraps every reason a ticket is refused (bad signature,
// expired, not yet valid, malformed, replayed): the handler answers 401.
var ErrBadTicket = errors.New("invalid ticket")

// MinHMACKeyLen is the shortest shared secret accepted for HS256/384/512:
// 256 bits, as RFC 7518 section 3.2 requires for HS256.
const MinHMACKeyLen = 32

// TicketVerifier checks signed tickets: JWTs that name their target, the way
// websockify's JWT token plugin reads them — claims "host" and "port" — or
// with one "target" claim ("host:port" or "unix/<path>"). Tickets must carry
// "exp"; "nbf" and "iat" are honoured. A ticket with a "jti" is single-use:
// the id is remembered until the ticket expires and a second use is refused.
type TicketVerifier struct {
	key     any
	methods []string
	parser  *jwt.Parser

	mu       sync.Mutex
	used     map[string]time.Time
	inserted int
}

// NewTicketVerifier takes the key material: a PEM public key (RSA, ECDSA or
// Ed25519; "PUBLIC KEY", "RSA PUBLIC KEY" or a "CERTIFICATE"), which allows
// the matching RS/PS, ES or EdDSA algorithms only, or else a shared secret
// of at least MinHMACKeyLen bytes for HS256/384/512 (surrounding white space
// is trimmed, so a key file may end with a newline).
func NewTicketVerifier(material []byte, leeway time.Duration) (*TicketVerifier, error) {
	v := &TicketVerifier{used: make(map[string]time.Time)}
	if block, _ := pem.Decode(material); block != nil {
		pub, err := parsePublicKey(block)
		if err != nil {
			return nil, err
		}
		v.key = pub
		switch pub.(type) {
		case *rsa.PublicKey:
			v.methods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
		case *ecdsa.PublicKey:
			v.methods = []string{"ES256", "ES384", "ES512"}
		case ed25519.PublicKey:
			v.methods = []string{"EdDSA"}
		default:
			return nil, fmt.Errorf("jwt key: unsupported public key type %T", pub)
		}
	} else {
		secret := bytes.TrimSpace(material)
		if len(secret) < MinHMACKeyLen {
			return nil, fmt.Errorf("jwt key: a shared secret needs at least %d bytes, got %d", MinHMACKeyLen, len(secret))
		}
		v.key = secret
		v.methods = []string{"HS256", "HS384", "HS512"}
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
	)
	return v, nil
}

func parsePublicKey(block *pem.Block) (any, error) {
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("jwt key: parsing public key: %w", err)
		}
		return k, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("jwt key: parsing RSA public key: %w", err)
		}
		return k, nil
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("jwt key: parsing certificate: %w", err)
		}
		return c.PublicKey, nil
	default:
		return nil, fmt.Errorf("jwt key: PEM block %q is not a public key (never give Caddy the private key)", block.Type)
	}
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
	if _, err := v.parser.ParseWithClaims(ticket, &c, func(*jwt.Token) (any, error) { return v.key, nil }); err != nil {
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
