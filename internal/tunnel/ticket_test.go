package tunnel

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestTicketVerifierReadsClaimShapesAndRefusesBadTickets(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	v, err := NewTicketVerifier(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), "", "test key", 0)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Minute).Unix()
	for _, tt := range []struct {
		claims jwt.MapClaims
		want   string
	}{
		{jwt.MapClaims{"host": "10.0.0.1", "port": 5900, "exp": exp}, "10.0.0.1:5900"},
		{jwt.MapClaims{"host": "10.0.0.1", "port": "5901", "exp": exp}, "10.0.0.1:5901"},
		{jwt.MapClaims{"host": "::1", "port": 22, "exp": exp}, "[::1]:22"},
		{jwt.MapClaims{"target": "unix//run/vnc.sock", "exp": exp}, "unix//run/vnc.sock"},
	} {
		got, err := v.Verify(sign(tt.claims))
		if err != nil || got.String() != tt.want {
			t.Fatalf("%v: got %v %v, want %s", tt.claims, got, err, tt.want)
		}
	}
	for name, c := range map[string]jwt.MapClaims{
		"no target":  {"exp": exp},
		"no port":    {"host": "h", "exp": exp},
		"bad port":   {"host": "h", "port": 70000, "exp": exp},
		"float port": {"host": "h", "port": 22.5, "exp": exp},
		"no exp":     {"target": "h:1"},
		"expired":    {"target": "h:1", "exp": time.Now().Add(-time.Second).Unix()},
	} {
		if _, err := v.Verify(sign(c)); !errors.Is(err, ErrBadTicket) {
			t.Fatalf("%s: err %v, want ErrBadTicket", name, err)
		}
	}
	// Single use.
	once := sign(jwt.MapClaims{"target": "h:1", "exp": exp, "jti": "x"})
	if _, err := v.Verify(once); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(once); !errors.Is(err, ErrBadTicket) || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("replay: %v", err)
	}
}

func TestNewTicketVerifierRefusesWeakOrPrivateKeys(t *testing.T) {
	if _, err := NewTicketVerifier([]byte("short secret\n"), "", "test key", 0); err == nil {
		t.Fatal("a 12-byte HMAC secret was accepted")
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	if _, err := NewTicketVerifier(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "", "test key", 0); err == nil || !strings.Contains(err.Error(), "private") {
		t.Fatalf("private key: %v", err)
	}
}

func TestTicketReservationRefusesConcurrentUseAndReleaseGivesItBack(t *testing.T) {
	secret := []byte(strings.Repeat("k", 32))
	v, err := NewTicketVerifier(secret, "", "test key", 0)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"jti": "once", "target": "127.0.0.1:1", "exp": time.Now().Add(time.Minute).Unix()}).SignedString(secret)

	const n = 16
	results := make(chan *Reservation, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, r, err := v.Reserve(tok); err == nil {
				results <- r
			}
		}()
	}
	wg.Wait()
	close(results)
	var won []*Reservation
	for r := range results {
		won = append(won, r)
	}
	if len(won) != 1 {
		t.Fatalf("%d of %d concurrent uses reserved the ticket, want 1", len(won), n)
	}
	won[0].Release()
	_, r, err := v.Reserve(tok)
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	r.Commit()
	r.Release() // after Commit: no effect
	if _, _, err := v.Reserve(tok); !errors.Is(err, ErrBadTicket) {
		t.Fatalf("after Commit: %v, want ErrBadTicket", err)
	}
}
