package caddyws

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestTunnelTokenFileByQueryAndPathAndReread(t *testing.T) {
	echoA, echoB := tcpEcho(t), tcpEcho(t)
	file := filepath.Join(t.TempDir(), "tokens")
	writeTokenFile(t, file, "# websockify format", "alpha: "+echoA)
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /vnc* {
		targets `+file+`
	}
}`)
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/vnc?token=alpha"), nil), "by query")
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/vnc/alpha"), nil), "by path")
	if c, status, msg := wsDial(t, tc.WSURL("/vnc?token=beta"), nil); c != nil || status != 403 {
		t.Fatalf("unknown token: %d %s, want 403", status, msg)
	}
	if c, status, msg := wsDial(t, tc.WSURL("/vnc/"), nil); c != nil || status != 400 {
		t.Fatalf("no token: %d %s, want 400", status, msg)
	}
	// Edited without a reload: beta appears, alpha goes.
	writeTokenFile(t, file, "beta: "+echoB)
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/vnc?token=beta"), nil), "new token")
	if c, status, _ := wsDial(t, tc.WSURL("/vnc?token=alpha"), nil); c != nil || status != 403 {
		t.Fatalf("removed token still works: %d", status)
	}
	// A broken edit keeps the last good mapping.
	writeTokenFile(t, file, "this line is not a token line")
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/vnc?token=beta"), nil), "kept after a bad edit")
}

func TestTunnelTokenFileTargetsHeldToAllowList(t *testing.T) {
	inside, outside := tcpEcho(t), tcpEcho(t)
	_, port := hostPort(inside)
	file := filepath.Join(t.TempDir(), "tokens")
	writeTokenFile(t, file, "in: "+inside, "out: "+outside)
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel {
		targets `+file+`
		token_param t
		allow 127.0.0.1:`+port+`
	}
}`)
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/?t=in"), nil), "inside")
	if c, status, _ := wsDial(t, tc.WSURL("/?t=out"), nil); c != nil || status != 403 {
		t.Fatalf("target outside allow: %d, want 403", status)
	}
}

func TestTunnelJWTTickets(t *testing.T) {
	allowed, outside := tcpEcho(t), tcpEcho(t)
	host, port := hostPort(allowed)
	_, outPort := hostPort(outside)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyFile := filepath.Join(t.TempDir(), "ticket.pub")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	forger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	secret := "a-shared-secret-that-is-32-bytes-long!!"
	t.Setenv("CADDYWS_TEST_TICKET_KEY", secret)

	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /es/* {
		jwt_key `+keyFile+`
		allow 127.0.0.1:`+port+`
	}
	websocket_tunnel /hs/* {
		jwt_key {env.CADDYWS_TEST_TICKET_KEY}
	}
}`)
	sign := func(k any, method jwt.SigningMethod, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(method, claims).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := func(d time.Duration) int64 { return time.Now().Add(d).Unix() }
	es := func(claims jwt.MapClaims) string { return sign(key, jwt.SigningMethodES256, claims) }

	// websockify's claim shape: host + numeric port.
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/es/?token="+es(jwt.MapClaims{"host": host, "port": mustAtoi(t, port), "exp": exp(time.Minute)})), nil), "es256")
	// One "target" claim, ticket as the last path segment.
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/es/"+es(jwt.MapClaims{"target": allowed, "exp": exp(time.Minute)})), nil), "target claim")
	// Shared secret from the environment.
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/hs/?token="+sign([]byte(secret), jwt.SigningMethodHS256, jwt.MapClaims{"target": outside, "exp": exp(time.Minute)})), nil), "hs256")

	once := es(jwt.MapClaims{"target": allowed, "exp": exp(time.Minute), "jti": "ticket-1"})
	for _, tt := range []struct {
		name, url string
		status    int
	}{
		{"expired", "/es/?token=" + es(jwt.MapClaims{"target": allowed, "exp": exp(-time.Minute)}), 401},
		{"no exp", "/es/?token=" + es(jwt.MapClaims{"target": allowed}), 401},
		{"not yet valid", "/es/?token=" + es(jwt.MapClaims{"target": allowed, "exp": exp(time.Hour), "nbf": exp(time.Minute)}), 401},
		{"forged", "/es/?token=" + sign(forger, jwt.SigningMethodES256, jwt.MapClaims{"target": allowed, "exp": exp(time.Minute)}), 401},
		{"alg confusion", "/es/?token=" + sign([]byte(secret), jwt.SigningMethodHS256, jwt.MapClaims{"target": allowed, "exp": exp(time.Minute)}), 401},
		{"garbage", "/es/?token=not.a.jwt", 401},
		{"outside allow", "/es/?token=" + es(jwt.MapClaims{"target": "127.0.0.1:" + outPort, "exp": exp(time.Minute)}), 403},
		{"wrong secret", "/hs/?token=" + sign([]byte(secret+"x"), jwt.SigningMethodHS256, jwt.MapClaims{"target": outside, "exp": exp(time.Minute)}), 401},
		{"first use", "/es/?token=" + once, 101},
		{"replayed", "/es/?token=" + once, 401},
	} {
		c, status, msg := wsDial(t, tc.WSURL(tt.url), nil)
		if status != tt.status {
			t.Fatalf("%s: status %d (%s), want %d", tt.name, status, msg, tt.status)
		}
		if c != nil {
			echoRoundTrip(t, c, tt.name)
		}
	}
	// A reload keeps the record of spent tickets.
	tc.Reload(`http://localhost:@HTTP@ {
	websocket_tunnel /es/* {
		jwt_key ` + keyFile + `
		allow 127.0.0.1:` + port + `
	}
	respond "reloaded"
}`)
	if c, status, _ := wsDial(t, tc.WSURL("/es/?token="+once), nil); c != nil || status != 401 {
		t.Fatalf("spent ticket after reload: status %d, want 401", status)
	}
	echoRoundTrip(t, mustTunnel(t, tc.WSURL("/es/?token="+es(jwt.MapClaims{"target": allowed, "exp": exp(time.Minute), "jti": "ticket-2"})), nil), "fresh ticket after reload")
}

func mustAtoi(t testing.TB, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}
