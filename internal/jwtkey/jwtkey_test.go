package jwtkey

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

type keys struct {
	rsa                        *rsa.PrivateKey
	ec                         *ecdsa.PrivateKey
	ec384                      *ecdsa.PrivateKey
	ed                         ed25519.PrivateKey
	rsaPub, rsaPKCS1, ecPub    []byte
	ec384Pub, edPub, cert      []byte
	rsaPriv, ecPriv, pkcs8Priv []byte
	rsa1024Pub                 []byte
}

func newKeys(t *testing.T) keys {
	t.Helper()
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	var k keys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	k.rsaPub = p("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)))
	k.rsaPKCS1 = p("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey))
	k.rsa1024Pub = p("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&weak.PublicKey)))
	k.ecPub = p("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&k.ec.PublicKey)))
	k.ec384Pub = p("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&k.ec384.PublicKey)))
	k.edPub = p("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(k.ed.Public())))
	k.rsaPriv = p("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa))
	k.ecPriv = p("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(k.ec)))
	k.pkcs8Priv = p("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(k.ed)))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokens"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	k.cert = p("CERTIFICATE", must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.ed.Public(), k.ed)))
	return k
}

func TestLoadTakesAlgorithmsFromTheKey(t *testing.T) {
	k := newKeys(t)
	rsaAll := []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	for _, c := range []struct {
		name     string
		material []byte
		alg      string
		want     []string
	}{
		{"RSA PKIX", k.rsaPub, "", rsaAll},
		{"RSA PKCS#1", k.rsaPKCS1, "", rsaAll},
		{"RSA with alg", k.rsaPub, "PS384", []string{"PS384"}},
		{"P-256", k.ecPub, "", []string{"ES256"}},
		{"P-384", k.ec384Pub, "", []string{"ES384"}},
		{"Ed25519", k.edPub, "", []string{"EdDSA"}},
		{"Ed25519 certificate", k.cert, "", []string{"EdDSA"}},
		{"32-byte secret", []byte(strings.Repeat("s", 32) + "\n"), "", []string{"HS256"}},
		{"48-byte secret", []byte(strings.Repeat("s", 48)), "", []string{"HS256", "HS384"}},
		{"64-byte secret", []byte(strings.Repeat("s", 64)), "", []string{"HS256", "HS384", "HS512"}},
		{"64-byte secret with alg", []byte(strings.Repeat("s", 64)), "HS512", []string{"HS512"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			key, err := Load(c.material, c.alg, "key")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(key.Methods, c.want) {
				t.Fatalf("methods %v, want %v", key.Methods, c.want)
			}
		})
	}
}

func TestLoadRefusesKeysThatContradictTheirUse(t *testing.T) {
	k := newKeys(t)
	jwk := []byte(`{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`)
	for _, c := range []struct {
		name     string
		material []byte
		alg      string
		want     string
	}{
		{"PEM public key as HS256 secret", k.rsaPub, "HS256", "never be an HMAC secret"},
		{"certificate as HS512 secret", k.cert, "HS512", "never be an HMAC secret"},
		{"JWK", jwk, "", "JSON Web Key"},
		{"JWK as HS256 secret", jwk, "HS256", "JSON Web Key"},
		{"JWK set", []byte(`{"keys":[]}` + strings.Repeat(" ", 40)), "", "JSON Web Key"},
		{"OpenSSH public key", []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host\n"), "", "SSH public key"},
		{"authorized_keys line with options", []byte(`restrict,command="x" ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ user`), "HS256", "SSH public key"},
		{"RFC 4716 SSH key", []byte("---- BEGIN SSH2 PUBLIC KEY ----\nAAAAB3NzaC1yc2EAAAADAQABAAABAQ\n---- END SSH2 PUBLIC KEY ----\n"), "", "SSH public key"},
		{"RSA private key", k.rsaPriv, "", "private key"},
		{"EC private key", k.ecPriv, "ES256", "private key"},
		{"PKCS#8 private key", k.pkcs8Priv, "", "private key"},
		{"OpenSSH private key", []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n"), "", "private key"},
		{"other PEM block", []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "", "not a public key"},
		{"RSA key for ES256", k.rsaPub, "ES256", "contradicts"},
		{"P-256 key for ES384", k.ecPub, "ES384", "contradicts"},
		{"EC key for EdDSA", k.ecPub, "EdDSA", "contradicts"},
		{"secret for RS256", []byte(strings.Repeat("s", 64)), "RS256", "needs a PEM public key"},
		{"short secret", []byte(strings.Repeat("s", 31) + "\n"), "", "at least 32"},
		{"32-byte secret for HS384", []byte(strings.Repeat("s", 32)), "HS384", "at least 48"},
		{"48-byte secret for HS512", []byte(strings.Repeat("s", 48)), "HS512", "at least 64"},
		{"1024-bit RSA", k.rsa1024Pub, "", "at least 2048"},
		{"empty", []byte(" \n"), "", "empty"},
		{"none", []byte(strings.Repeat("s", 64)), "none", "unsupported algorithm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.material, c.alg, `key file "/etc/k"`)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `key file "/etc/k"`) {
				t.Fatalf("err = %v, want one naming the source and saying %q", err, c.want)
			}
		})
	}
}

func TestLoadFileNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwt.key")
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path, ""); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want it to name %s", err, path)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing"), ""); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: err = %v", err)
	}
}

func TestKeyfuncRefusesAlgorithmConfusion(t *testing.T) {
	k := newKeys(t)
	key, err := Load(k.rsaPub, "", "key")
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{"exp": time.Now().Add(time.Minute).Unix()}
	parse := func(tok string) error {
		_, err := jwt.NewParser(jwt.WithValidMethods(key.Methods)).Parse(tok, key.Keyfunc)
		return err
	}
	for _, secret := range [][]byte{k.rsaPub, []byte(strings.TrimSpace(string(k.rsaPub)))} {
		forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
		if parse(forged) == nil {
			t.Fatal("HS256 token signed with the public key verified")
		}
		// Even a parser that does not pin the methods refuses it.
		if _, err := jwt.NewParser().Parse(forged, key.Keyfunc); err == nil {
			t.Fatal("HS256 token verified by a parser without WithValidMethods")
		}
	}
	good, _ := jwt.NewWithClaims(jwt.SigningMethodPS256, claims).SignedString(k.rsa)
	if err := parse(good); err != nil {
		t.Fatalf("PS256 token signed with the private key: %v", err)
	}
}

func TestEqual(t *testing.T) {
	k := newKeys(t)
	a, _ := Load(k.rsaPub, "", "a")
	b, _ := Load(k.rsaPKCS1, "RS256", "b")
	c, _ := Load(k.ecPub, "", "c")
	s1, _ := Load([]byte(strings.Repeat("s", 32)+"\n"), "", "s1")
	s2, _ := Load([]byte(strings.Repeat("s", 32)), "HS256", "s2")
	if !a.Equal(b) || a.Equal(c) || !s1.Equal(s2) || s1.Equal(a) || a.Equal(s1) {
		t.Fatal("Equal compares the key material, whatever its encoding")
	}
}
