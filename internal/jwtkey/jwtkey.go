// Package jwtkey is the one key policy for every JWT the module verifies:
// websocket_push subscriber and publisher tokens and websocket_tunnel
// tickets. It decides which algorithms a key may verify, so that a public
// key can never become an HMAC secret (the algorithm-confusion forgery) and
// text that is some other kind of key never becomes one either.
//
// The policy:
//   - Key material is a PEM public key ("PUBLIC KEY", "RSA PUBLIC KEY") or
//     certificate, or else an HMAC shared secret. Anything else that is
//     recognisably a key (a PEM block of another kind, a JSON Web Key, an
//     OpenSSH public key) is refused, never taken as a secret.
//   - Private keys are refused: Caddy only verifies, and a signing key on
//     the server lets whoever reads its files mint tokens.
//   - The algorithm comes from the key: RSA allows RS256/384/512 and
//     PS256/384/512, an EC key the ES algorithm of its curve, Ed25519
//     EdDSA, a secret the HS algorithms it is long enough for. An explicit
//     algorithm narrows that to one and must agree with the key.
//   - A secret is at least as long as the hash output (RFC 7518 section
//     3.2): HS256 32 bytes, HS384 48, HS512 64.
//   - Surrounding white space (spaces, tabs, line breaks) is trimmed from a
//     secret, so a key file may end with a newline.
package jwtkey

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithms lists every algorithm a key may be used with.
var Algorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// MinSecret is the shortest HMAC secret each HS algorithm accepts.
var MinSecret = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// Key is a verification key and the algorithms tokens may use with it.
type Key struct {
	// Methods are the accepted algorithms, for jwt.WithValidMethods.
	Methods []string
	// Source names where the key came from, for error messages.
	Source string
	key    any
}

// LoadFile reads and loads the key in path; errors name the file.
func LoadFile(path, alg string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	return Load(b, alg, fmt.Sprintf("key file %q", path))
}

// Load checks material against the policy and returns the key. alg is ""
// (take the algorithms from the key) or one of Algorithms. source names the
// material in errors, e.g. `key file "/etc/caddy/jwt.pub"`.
func Load(material []byte, alg, source string) (*Key, error) {
	if alg != "" && !slices.Contains(Algorithms, alg) {
		return nil, fmt.Errorf("%s: unsupported algorithm %q (want one of %s)", source, alg, strings.Join(Algorithms, ", "))
	}
	k, err := load(material, alg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	k.Source = source
	if alg != "" {
		if !slices.Contains(k.Methods, alg) {
			return nil, fmt.Errorf("%s: alg %s contradicts the key, which allows %s", source, alg, strings.Join(k.Methods, ", "))
		}
		k.Methods = []string{alg}
	}
	return k, nil
}

func load(material []byte, alg string) (*Key, error) {
	trimmed := bytes.TrimSpace(material)
	if len(trimmed) == 0 {
		return nil, errors.New("empty key")
	}
	if bytes.Contains(trimmed, []byte("-----BEGIN ")) {
		return loadPEM(trimmed, alg)
	}
	if kind := otherKeyFormat(trimmed); kind != "" {
		return nil, fmt.Errorf("holds %s, which is neither a PEM public key nor an HMAC secret; convert it to a PEM public key", kind)
	}
	if alg != "" && !strings.HasPrefix(alg, "HS") {
		return nil, fmt.Errorf("alg %s needs a PEM public key, not a shared secret", alg)
	}
	var methods []string
	for _, m := range []string{"HS256", "HS384", "HS512"} {
		if len(trimmed) >= MinSecret[m] && (alg == "" || alg == m) {
			methods = append(methods, m)
		}
	}
	if len(methods) == 0 {
		want := alg
		if want == "" {
			want = "HS256"
		}
		return nil, fmt.Errorf("%s secret is %d bytes, must be at least %d (RFC 7518 section 3.2)", want, len(trimmed), MinSecret[want])
	}
	return &Key{Methods: methods, key: trimmed}, nil
}

// otherKeyFormat names key formats that are not secrets, "" for none.
func otherKeyFormat(b []byte) string {
	if b[0] == '{' && json.Valid(b) {
		var jwk struct {
			Kty  string          `json:"kty"`
			Keys json.RawMessage `json:"keys"`
		}
		if json.Unmarshal(b, &jwk) == nil && (jwk.Kty != "" || jwk.Keys != nil) {
			return "a JSON Web Key"
		}
		return "JSON (a JSON Web Key?)"
	}
	if bytes.HasPrefix(b, []byte("---- BEGIN SSH2 PUBLIC KEY")) {
		return "an SSH public key"
	}
	// An authorized_keys line: [options] <type> <base64> [comment].
	for _, f := range strings.Fields(string(firstLine(b))) {
		for _, p := range []string{"ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"} {
			if strings.HasPrefix(f, p) {
				return "an SSH public key"
			}
		}
	}
	return ""
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return b
}

func loadPEM(material []byte, alg string) (*Key, error) {
	if strings.HasPrefix(alg, "HS") {
		return nil, fmt.Errorf("alg %s needs a shared secret, but this is a PEM key: a public key must never be an HMAC secret", alg)
	}
	// Checked on the text, so that a private key is named as such even
	// when its PEM does not decode.
	if bytes.Contains(material, []byte("PRIVATE KEY-----")) {
		return nil, errors.New("holds a private key; give Caddy only the public key (openssl pkey -pubout)")
	}
	block, _ := pem.Decode(material)
	if block == nil {
		return nil, errors.New("malformed PEM")
	}
	pub, err := parsePublic(block, material)
	if err != nil {
		return nil, err
	}
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key has %d bits, must have at least 2048", pub.N.BitLen())
		}
		return &Key{Methods: []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, key: pub}, nil
	case *ecdsa.PublicKey:
		m := map[elliptic.Curve]string{elliptic.P256(): "ES256", elliptic.P384(): "ES384", elliptic.P521(): "ES512"}[pub.Curve]
		if m == "" {
			return nil, fmt.Errorf("EC key on curve %s, want P-256, P-384 or P-521", pub.Curve.Params().Name)
		}
		return &Key{Methods: []string{m}, key: pub}, nil
	case ed25519.PublicKey:
		return &Key{Methods: []string{"EdDSA"}, key: pub}, nil
	}
	return nil, fmt.Errorf("unsupported public key type %T", pub)
}

// parsePublic uses golang-jwt's parsers, which know the PKIX, PKCS#1 and
// certificate encodings; only the certificate's key needs x509 here,
// because ParseEdPublicKeyFromPEM reads no certificates.
func parsePublic(block *pem.Block, material []byte) (any, error) {
	switch block.Type {
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		return c.PublicKey, nil
	case "PUBLIC KEY", "RSA PUBLIC KEY":
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key or certificate", block.Type)
	}
	var errs []error
	for _, parse := range []func([]byte) (any, error){
		func(b []byte) (any, error) { return jwt.ParseRSAPublicKeyFromPEM(b) },
		func(b []byte) (any, error) { return jwt.ParseECPublicKeyFromPEM(b) },
		func(b []byte) (any, error) { return jwt.ParseEdPublicKeyFromPEM(b) },
	} {
		k, err := parse(material)
		if err == nil {
			return k, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("parsing PEM public key: %w", errors.Join(errs...))
}

// Keyfunc is the jwt.Keyfunc for this key. Besides the algorithm list it
// checks the key type, so no option elsewhere can reopen alg confusion.
func (k *Key) Keyfunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if !slices.Contains(k.Methods, alg) || !typeMatches(t.Method, k.key) {
		return nil, fmt.Errorf("algorithm %s not accepted", alg)
	}
	return k.key, nil
}

func typeMatches(m jwt.SigningMethod, key any) bool {
	switch m.(type) {
	case *jwt.SigningMethodHMAC:
		_, ok := key.([]byte)
		return ok
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		_, ok := key.(*rsa.PublicKey)
		return ok
	case *jwt.SigningMethodECDSA:
		_, ok := key.(*ecdsa.PublicKey)
		return ok
	case *jwt.SigningMethodEd25519:
		_, ok := key.(ed25519.PublicKey)
		return ok
	}
	return false
}

// Equal reports whether two keys verify with the same key material.
func (k *Key) Equal(o *Key) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if a, ok := k.key.([]byte); ok {
		b, ok := o.key.([]byte)
		return ok && bytes.Equal(a, b)
	}
	if e, ok := k.key.(equaler); ok {
		return e.Equal(o.key)
	}
	return false
}
