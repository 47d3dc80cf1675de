package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testKeys are generated once per test binary: real keys, never fixtures.
type testKeys struct {
	secret               []byte
	rsaPriv, rsaPriv2    *rsa.PrivateKey
	ecPriv, ecPriv2      *ecdsa.PrivateKey
	edPriv               ed25519.PrivateKey
	rsaPubPEM, ecPubPEM  []byte
	rsaPrivPEM, edPubPEM []byte
}

// loadKeys is lazy so fuzz workers of this package do not pay for RSA
// key generation.
var loadKeys = sync.OnceValue(func() testKeys {
	var k testKeys
	k.secret = []byte("0123456789abcdef0123456789abcdef-hs256")
	var err error
	if k.rsaPriv, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsaPriv2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ecPriv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if k.ecPriv2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.edPriv, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	k.rsaPubPEM = pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&k.rsaPriv.PublicKey)))
	k.ecPubPEM = pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&k.ecPriv.PublicKey)))
	k.edPubPEM = pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(k.edPriv.Public())))
	k.rsaPrivPEM = pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsaPriv))
	return k
})

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

func claims(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func TestJWTVerify(t *testing.T) {
	keys := loadKeys()
	hs := JWTConfig{Algorithm: "HS256", Key: keys.secret}
	rs := JWTConfig{Algorithm: "RS256", Key: keys.rsaPubPEM}
	es := JWTConfig{Algorithm: "ES256", Key: keys.ecPubPEM}
	past := time.Now().Add(-time.Hour).Unix()
	// An HS256 token whose secret is the RSA public key PEM: the classic
	// algorithm-confusion forgery.
	confused := func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, keys.rsaPubPEM, claims(nil)) }
	noneTok := func(t *testing.T) string {
		return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))
	}

	tests := []struct {
		name       string
		cfg        JWTConfig
		token      func(t *testing.T) string
		wantUser   string
		wantEvents []string
		wantErr    bool
	}{
		{"hs256 good", hs, func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, keys.secret, claims(nil)) }, "alice", nil, false},
		{"rs256 good", rs, func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, keys.rsaPriv, claims(nil)) }, "alice", nil, false},
		{"es256 good", es, func(t *testing.T) string { return sign(t, jwt.SigningMethodES256, keys.ecPriv, claims(nil)) }, "alice", nil, false},
		{"eddsa good", JWTConfig{Algorithm: "EdDSA", Key: keys.edPubPEM}, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodEdDSA, keys.edPriv, claims(nil))
		}, "alice", nil, false},
		{"rs256 inferred from the key", JWTConfig{Key: keys.rsaPubPEM}, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, keys.rsaPriv, claims(nil))
		}, "alice", nil, false},
		{"confusion with alg inferred from the key", JWTConfig{Key: keys.rsaPubPEM}, confused, "", nil, true},
		{"events claim list", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"events": []string{"news", "chat"}}))
		}, "alice", []string{"news", "chat"}, false},
		{"events claim single string", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"events": "news"}))
		}, "alice", []string{"news"}, false},
		{"events claim empty list allows none", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"events": []string{}}))
		}, "alice", []string{}, false},
		{"events claim not strings", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"events": []int{1}}))
		}, "", nil, true},
		{"custom user and events claims, nested", JWTConfig{Algorithm: "HS256", Key: keys.secret, UserClaim: "uid", EventsClaim: "push.topics"}, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"uid": 42, "push": map[string]any{"topics": []string{"a"}}}))
		}, "42", []string{"a"}, false},
		{"expired", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"exp": past}))
		}, "", nil, true},
		{"expired within leeway", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"exp": time.Now().Add(-5 * time.Second).Unix()}))
		}, "alice", nil, false},
		{"not yet valid", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()}))
		}, "", nil, true},
		{"no exp refused by default", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"exp": nil}))
		}, "", nil, true},
		{"no exp allowed when configured", JWTConfig{Algorithm: "HS256", Key: keys.secret, AllowNoExpiry: true}, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"exp": nil}))
		}, "alice", nil, false},
		{"wrong hmac secret", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-32b!"), claims(nil))
		}, "", nil, true},
		{"wrong rsa key", rs, func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, keys.rsaPriv2, claims(nil)) }, "", nil, true},
		{"wrong ec key", es, func(t *testing.T) string { return sign(t, jwt.SigningMethodES256, keys.ecPriv2, claims(nil)) }, "", nil, true},
		{"tampered payload", hs, func(t *testing.T) string {
			tok := sign(t, jwt.SigningMethodHS256, keys.secret, claims(nil))
			forged := sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"sub": "mallory"}))
			p := strings.Split(tok, ".")
			return p[0] + "." + strings.Split(forged, ".")[1] + "." + p[2]
		}, "", nil, true},
		{"alg confusion: HS256 signed with the RSA public key", rs, confused, "", nil, true},
		{"alg none", hs, noneTok, "", nil, true},
		{"alg none against rsa", rs, noneTok, "", nil, true},
		{"other alg of the same family refused", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS512, append(keys.secret, keys.secret...), claims(nil))
		}, "", nil, true},
		{"rs512 refused when rs256 configured", rs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS512, keys.rsaPriv, claims(nil))
		}, "", nil, true},
		{"garbage", hs, func(*testing.T) string { return "not.a.jwt" }, "", nil, true},
		{"empty", hs, func(*testing.T) string { return "" }, "", nil, true},
		{"huge", hs, func(*testing.T) string { return strings.Repeat("a", MaxTokenLength+1) }, "", nil, true},
		{"missing sub", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"sub": nil}))
		}, "", nil, true},
		{"sub not a string", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"sub": []string{"x"}}))
		}, "", nil, true},
		{"issuer matches", JWTConfig{Algorithm: "HS256", Key: keys.secret, Issuer: "https://idp"}, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"iss": "https://idp"}))
		}, "alice", nil, false},
		{"issuer differs", JWTConfig{Algorithm: "HS256", Key: keys.secret, Issuer: "https://idp"}, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"iss": "https://evil"}))
		}, "", nil, true},
		{"issuer missing", JWTConfig{Algorithm: "HS256", Key: keys.secret, Issuer: "https://idp"}, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(nil))
		}, "", nil, true},
		{"audience in list", JWTConfig{Algorithm: "HS256", Key: keys.secret, Audience: "push"}, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"aud": []string{"api", "push"}}))
		}, "alice", nil, false},
		{"audience differs", JWTConfig{Algorithm: "HS256", Key: keys.secret, Audience: "push"}, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"aud": "api"}))
		}, "", nil, true},
		{"issued in the future", hs, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"iat": time.Now().Add(time.Hour).Unix()}))
		}, "", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewJWT(tc.cfg)
			if err != nil {
				t.Fatalf("NewJWT: %v", err)
			}
			id, err := v.Verify(context.Background(), tc.token(t))
			if tc.wantErr {
				if !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("want ErrUnauthorized, got id=%+v err=%v", id, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.User != tc.wantUser {
				t.Errorf("user = %q, want %q", id.User, tc.wantUser)
			}
			if (id.Events == nil) != (tc.wantEvents == nil) || !slices.Equal(id.Events, tc.wantEvents) {
				t.Errorf("events = %#v, want %#v", id.Events, tc.wantEvents)
			}
		})
	}
}

func TestJWTExpiresFromExp(t *testing.T) {
	keys := loadKeys()
	v, err := NewJWT(JWTConfig{Algorithm: "HS256", Key: keys.secret, Leeway: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	id, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"exp": exp.Unix()})))
	if err != nil {
		t.Fatal(err)
	}
	if want := exp.Add(time.Second); !id.Expires.Equal(want) {
		t.Fatalf("Expires = %v, want exp+leeway %v", id.Expires, want)
	}
	v2, _ := NewJWT(JWTConfig{Algorithm: "HS256", Key: keys.secret, AllowNoExpiry: true})
	id, err = v2.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"exp": nil})))
	if err != nil || !id.Expires.IsZero() {
		t.Fatalf("no exp: Expires = %v, err %v; want zero", id.Expires, err)
	}
}

// TestJWTPublisherToken is the publisher check the push glue makes in one
// Verify call: a token without a user but with the required role passes;
// a subscriber token (no role) does not.
func TestJWTPublisherToken(t *testing.T) {
	keys := loadKeys()
	v, err := NewJWT(JWTConfig{Algorithm: "ES256", Key: keys.ecPubPEM, UserOptional: true, Require: map[string]string{"role": "publisher"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    jwt.MapClaims
		ok   bool
	}{
		{"role string", claims(jwt.MapClaims{"sub": nil, "role": "publisher"}), true},
		{"role in list", claims(jwt.MapClaims{"role": []string{"reader", "publisher"}}), true},
		{"role absent", claims(nil), false},
		{"role differs", claims(jwt.MapClaims{"role": "reader"}), false},
		{"expired publisher", claims(jwt.MapClaims{"role": "publisher", "exp": time.Now().Add(-time.Hour).Unix()}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, keys.ecPriv, tc.c))
			if tc.ok && err != nil {
				t.Fatalf("want accepted, got %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("want ErrUnauthorized, got %v", err)
			}
		})
	}
	scope, _ := NewJWT(JWTConfig{Algorithm: "HS256", Key: keys.secret, UserOptional: true, Require: map[string]string{"scope": "push:publish"}})
	if _, err := scope.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"scope": "openid push:publish"}))); err != nil {
		t.Fatalf("space-separated scope: %v", err)
	}
	if _, err := scope.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, keys.secret, claims(jwt.MapClaims{"scope": "openid push:publisher"}))); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("scope prefix must not match, got %v", err)
	}
}

func TestJWTKeyFile(t *testing.T) {
	keys := loadKeys()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, append(append([]byte{}, keys.secret...), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := NewJWT(JWTConfig{Algorithm: "HS256", KeyFile: secretFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, keys.secret, claims(nil))); err != nil {
		t.Fatalf("secret file with trailing newline: %v", err)
	}
	pemFile := filepath.Join(dir, "rsa.pem")
	if err := os.WriteFile(pemFile, keys.rsaPubPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err = NewJWT(JWTConfig{Algorithm: "RS256", KeyFile: pemFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, keys.rsaPriv, claims(nil))); err != nil {
		t.Fatalf("PEM file: %v", err)
	}
}

func TestNewJWTRejectsBadConfig(t *testing.T) {
	keys := loadKeys()
	tests := []struct {
		name string
		cfg  JWTConfig
		want string
	}{
		{"none alg", JWTConfig{Algorithm: "none", Key: keys.secret}, "unsupported algorithm"},
		{"unknown alg", JWTConfig{Algorithm: "XX256", Key: keys.secret}, "unsupported algorithm"},
		{"no key", JWTConfig{Algorithm: "HS256"}, "exactly one"},
		{"key and file", JWTConfig{Algorithm: "HS256", Key: keys.secret, KeyFile: "/x"}, "exactly one"},
		{"short secret", JWTConfig{Algorithm: "HS256", Key: []byte("secret")}, "at least 32"},
		{"missing file", JWTConfig{Algorithm: "HS256", KeyFile: "/nonexistent/key"}, "reading key file"},
		{"rsa alg with EC key", JWTConfig{Algorithm: "RS256", Key: keys.ecPubPEM}, "contradicts the key"},
		{"ec alg with RSA key", JWTConfig{Algorithm: "ES256", Key: keys.rsaPubPEM}, "contradicts the key"},
		{"rsa alg with secret", JWTConfig{Algorithm: "RS256", Key: keys.secret}, "needs a PEM public key"},
		{"hs alg with PEM public key", JWTConfig{Algorithm: "HS256", Key: keys.rsaPubPEM}, "never be an HMAC secret"},
		{"private key", JWTConfig{Algorithm: "RS256", Key: keys.rsaPrivPEM}, "private key"},
		{"negative leeway", JWTConfig{Algorithm: "HS256", Key: keys.secret, Leeway: -time.Second}, "leeway"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewJWT(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// BenchmarkJWTVerify is the per-connect cost of each algorithm.
func BenchmarkJWTVerify(b *testing.B) {
	keys := loadKeys()
	c := jwt.MapClaims{"sub": "alice", "events": []string{"news"}, "exp": time.Now().Add(time.Hour).Unix()}
	for _, tc := range []struct {
		alg  string
		key  []byte
		m    jwt.SigningMethod
		sign any
	}{
		{"HS256", keys.secret, jwt.SigningMethodHS256, keys.secret},
		{"RS256", keys.rsaPubPEM, jwt.SigningMethodRS256, keys.rsaPriv},
		{"ES256", keys.ecPubPEM, jwt.SigningMethodES256, keys.ecPriv},
	} {
		b.Run(tc.alg, func(b *testing.B) {
			v, err := NewJWT(JWTConfig{Algorithm: tc.alg, Key: tc.key})
			if err != nil {
				b.Fatal(err)
			}
			tok, err := jwt.NewWithClaims(tc.m, c).SignedString(tc.sign)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
