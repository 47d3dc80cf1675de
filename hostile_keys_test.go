package caddyws

// Key material a hostile token, or a careless config, could turn against
// the JWT verifiers of websocket_push and websocket_tunnel.

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
)

// hostileKeys are real keys generated for the test, written to files.
type hostileKeys struct {
	dir                         string
	rsa                         *rsa.PrivateKey
	ec                          *ecdsa.PrivateKey
	ed                          ed25519.PrivateKey
	rsaPub, ecPub, edPub        string // PEM files
	rsaPubPEM                   []byte
	rsaPriv, jwk, ssh, secret32 string // files
	secret32Value, shortSecretV string
	shortSecret                 string
}

func newHostileKeys(t *testing.T) hostileKeys {
	t.Helper()
	k := hostileKeys{dir: t.TempDir()}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(k.dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemOf := func(typ string, der []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	}
	pkix := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	k.rsaPubPEM = pemOf("PUBLIC KEY", pkix(&k.rsa.PublicKey))
	k.rsaPub = write("rsa.pub.pem", k.rsaPubPEM)
	k.ecPub = write("ec.pub.pem", pemOf("PUBLIC KEY", pkix(&k.ec.PublicKey)))
	k.edPub = write("ed.pub.pem", pemOf("PUBLIC KEY", pkix(k.ed.Public())))
	k.rsaPriv = write("rsa.key.pem", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa)))
	n := base64.RawURLEncoding.EncodeToString(k.rsa.N.Bytes())
	k.jwk = write("rsa.jwk", []byte(`{"kty":"RSA","e":"AQAB","n":"`+n+`"}`+"\n"))
	edPub := k.ed.Public().(ed25519.PublicKey)
	// The authorized_keys form: a length-prefixed type name, then the key.
	blob := append([]byte{0, 0, 0, 11}, "ssh-ed25519"...)
	blob = append(append(blob, 0, 0, 0, 32), edPub...)
	k.ssh = write("id_ed25519.pub", []byte("ssh-ed25519 "+base64.StdEncoding.EncodeToString(blob)+" tickets@example\n"))
	k.secret32Value = strings.Repeat("s", 32)
	k.secret32 = write("secret", []byte(k.secret32Value+"\n"))
	k.shortSecretV = strings.Repeat("s", 31)
	k.shortSecret = write("short", []byte(k.shortSecretV+"\n"))
	return k
}

func signToken(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Minute).Unix()
	}
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("signing %s: %v", m.Alg(), err)
	}
	return s
}

// loadConfigErr loads sites into a fresh Caddy and returns the load error;
// a config that loads is stopped again.
func loadConfigErr(t *testing.T, sites string) error {
	t.Helper()
	ports := lowPorts(t, 3)
	tc := &testCaddy{t: t, HTTPPort: ports[0], HTTPSPort: ports[1], AdminPort: ports[2]}
	err := tc.load(sites)
	if err == nil {
		_ = caddy.Stop()
	}
	return err
}

// pushConnects dials path with token and reports whether the hub greeted
// the client as user.
func pushConnects(t *testing.T, tc *testCaddy, path, token, user string) bool {
	t.Helper()
	c := dialPush(t, tc.WSURL(path), nil)
	sendJSON(t, c, `{"token":"`+token+`"}`)
	f, err := tryReadFrame(c, 5*time.Second)
	return err == nil && f.Type == "connected" && f.User == user
}

func TestPushJWTPublicKeyIsNeverAnHMACSecret(t *testing.T) {
	k := newHostileKeys(t)
	tc, _ := pushCaddy(t, fmt.Sprintf(`http://localhost:@HTTP@ {
	websocket_push /rsa {
		hub keys
		auth jwt {
			key_file %s
		}
	}
	websocket_push /ec {
		hub keys
		auth jwt {
			key_file %s
		}
	}
	websocket_push /ed {
		hub keys
		auth jwt {
			key_file %s
		}
	}
	websocket_push /hs {
		hub keys
		auth jwt {
			key_file %s
		}
	}
}`, k.rsaPub, k.ecPub, k.edPub, k.secret32))
	claims := func() jwt.MapClaims { return jwt.MapClaims{"sub": "mallory"} }
	// The PEM as it is in the file, and without its final line break.
	for _, secret := range [][]byte{k.rsaPubPEM, []byte(strings.TrimSpace(string(k.rsaPubPEM)))} {
		forged := signToken(t, jwt.SigningMethodHS256, secret, claims())
		if pushConnects(t, tc, "/rsa", forged, "mallory") {
			t.Fatal("an HS256 token signed with the RSA public key connected as mallory")
		}
	}
	for _, c := range []struct {
		path string
		m    jwt.SigningMethod
		key  any
	}{
		{"/rsa", jwt.SigningMethodRS256, k.rsa},
		{"/ec", jwt.SigningMethodES256, k.ec},
		{"/ed", jwt.SigningMethodEdDSA, k.ed},
		{"/hs", jwt.SigningMethodHS256, []byte(k.secret32Value)},
	} {
		if !pushConnects(t, tc, c.path, signToken(t, c.m, c.key, jwt.MapClaims{"sub": "alice"}), "alice") {
			t.Errorf("%s: a %s token signed with the right key was refused", c.path, c.m.Alg())
		}
	}
}

func TestPushJWTKeyThatContradictsItsUseFailsLoad(t *testing.T) {
	k := newHostileKeys(t)
	for _, c := range []struct {
		name, alg, file, want string
	}{
		{"PEM public key as HS256 secret", "HS256", k.rsaPub, "PEM"},
		{"JWK as secret", "", k.jwk, "JSON Web Key"},
		{"JWK as HS256 secret", "HS256", k.jwk, "JSON Web Key"},
		{"SSH public key as secret", "", k.ssh, "SSH"},
		{"private key", "RS256", k.rsaPriv, "private key"},
		{"private key without alg", "", k.rsaPriv, "private key"},
		{"RSA key for ES256", "ES256", k.rsaPub, "ES256"},
		{"EC key for EdDSA", "EdDSA", k.ecPub, "EdDSA"},
		{"short HS256 secret", "", k.shortSecret, "at least 32"},
		{"32-byte secret for HS512", "HS512", k.secret32, "at least 64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			alg := ""
			if c.alg != "" {
				alg = "alg " + c.alg
			}
			err := loadConfigErr(t, fmt.Sprintf(`http://localhost:@HTTP@ {
	websocket_push {
		auth jwt {
			%s
			key_file %s
		}
	}
}`, alg, c.file))
			if err == nil || !strings.Contains(err.Error(), c.file) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("load error = %v; want one naming %s and saying %q", err, c.file, c.want)
			}
		})
	}
}

func TestTunnelJWTKeyThatIsNotAKeyFailsLoad(t *testing.T) {
	k := newHostileKeys(t)
	for _, c := range []struct {
		name, file, want string
		forge            []byte // the secret a forger would sign with, if it loaded
	}{
		{"JWK", k.jwk, "JSON Web Key", nil},
		{"SSH public key", k.ssh, "SSH", nil},
		{"private key", k.rsaPriv, "private key", nil},
		{"short secret", k.shortSecret, "at least 32", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			sites := `http://localhost:@HTTP@ {
	websocket_tunnel {
		jwt_key ` + c.file + `
	}
}`
			ports := lowPorts(t, 3)
			tc := &testCaddy{t: t, HTTPPort: ports[0], HTTPSPort: ports[1], AdminPort: ports[2]}
			err := tc.load(sites)
			if err == nil {
				defer caddy.Stop()
				raw, _ := os.ReadFile(c.file)
				ticket := signToken(t, jwt.SigningMethodHS256, []byte(strings.TrimSpace(string(raw))), jwt.MapClaims{"target": tcpEcho(t)})
				if conn, status, _ := wsDial(t, tc.WSURL("/?token="+ticket), nil); conn != nil {
					conn.Close()
					t.Fatalf("jwt_key %s loaded, and an HS256 ticket signed with the file's text opened a tunnel (status %d)", c.file, status)
				}
				t.Fatalf("jwt_key %s loaded; want a load error", c.file)
			}
			if !strings.Contains(err.Error(), c.file) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("load error = %v; want one naming %s and saying %q", err, c.file, c.want)
			}
		})
	}
}

func TestTunnelJWTKeysOfEveryTypeOpenTunnels(t *testing.T) {
	k := newHostileKeys(t)
	echo := tcpEcho(t)
	tc := startTunnelCaddy(t, fmt.Sprintf(`http://localhost:@HTTP@ {
	websocket_tunnel /rsa/* {
		jwt_key %s
	}
	websocket_tunnel /ec/* {
		jwt_key %s
	}
	websocket_tunnel /ed/* {
		jwt_key %s
	}
	websocket_tunnel /hs/* {
		jwt_key %s
	}
}`, k.rsaPub, k.ecPub, k.edPub, k.secret32))
	for _, c := range []struct {
		path string
		m    jwt.SigningMethod
		key  any
	}{
		{"/rsa/", jwt.SigningMethodRS256, k.rsa},
		{"/rsa/", jwt.SigningMethodPS256, k.rsa},
		{"/ec/", jwt.SigningMethodES256, k.ec},
		{"/ed/", jwt.SigningMethodEdDSA, k.ed},
		{"/hs/", jwt.SigningMethodHS256, []byte(k.secret32Value)},
	} {
		url := tc.WSURL(c.path + "?token=" + signToken(t, c.m, c.key, jwt.MapClaims{"target": echo}))
		echoRoundTrip(t, mustTunnel(t, url, nil), c.m.Alg())
	}
	for _, secret := range [][]byte{k.rsaPubPEM, []byte(strings.TrimSpace(string(k.rsaPubPEM)))} {
		forged := signToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"target": echo})
		if conn, status, _ := wsDial(t, tc.WSURL("/rsa/?token="+forged), nil); conn != nil || status != 401 {
			t.Fatalf("HS256 ticket signed with the RSA public key: status %d, want 401", status)
		}
	}
}

func TestPushPublishJWTWithTheSubscriberKeyNeedsRequire(t *testing.T) {
	k := newHostileKeys(t)
	secret := strings.Repeat("q", 32)
	t.Setenv("CADDYWS_TEST_PUSH_SECRET", secret)
	for _, c := range []struct {
		name, auth, publish string
	}{
		{"same file", "key_file " + k.secret32, "key_file " + k.secret32},
		{"same secret, file and inline", "key_file " + k.secret32, "key " + k.secret32Value},
		{"same secret from the environment", "key {env.CADDYWS_TEST_PUSH_SECRET}", "key " + secret},
		{"same public key", "key_file " + k.ecPub, "key_file " + k.ecPub + "\n\t\t\talg ES256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sites := fmt.Sprintf(`http://localhost:@HTTP@ {
	websocket_push {
		auth jwt {
			%s
		}
		publish_jwt {
			%s
		}
	}
}`, c.auth, c.publish)
			ports := lowPorts(t, 3)
			tc := &testCaddy{t: t, HTTPPort: ports[0], HTTPSPort: ports[1], AdminPort: ports[2]}
			err := tc.load(sites)
			if err == nil {
				defer caddy.Stop()
				sub := signToken(t, jwt.SigningMethodHS256, []byte(k.secret32Value), jwt.MapClaims{"sub": "alice"})
				st, _ := postPush(t, tc.URL("/"), sub, `{"broadcast":true,"message":1}`)
				t.Fatalf("config loaded (a subscriber's HS256 token publishing: status %d); want a load error", st)
			}
			if !strings.Contains(err.Error(), "same key") || !strings.Contains(err.Error(), "require") {
				t.Fatalf("load error = %v; want one saying the keys are the same and require is needed", err)
			}
		})
	}
	// With a distinguishing claim the same key is fine; a different key too.
	tc, _ := pushCaddy(t, fmt.Sprintf(`http://localhost:@HTTP@ {
	websocket_push /required {
		hub pj
		auth jwt {
			key_file %s
		}
		publish_jwt {
			key_file %s
			require role publisher
		}
	}
	websocket_push /other {
		hub pj
		auth jwt {
			key_file %s
		}
		publish_jwt {
			key_file %s
		}
	}
}`, k.secret32, k.secret32, k.secret32, k.ecPub))
	body := `{"broadcast":true,"message":1}`
	sub := signToken(t, jwt.SigningMethodHS256, []byte(k.secret32Value), jwt.MapClaims{"sub": "alice"})
	pub := signToken(t, jwt.SigningMethodHS256, []byte(k.secret32Value), jwt.MapClaims{"role": "publisher"})
	for _, c := range []struct {
		name, path, tok string
		status          int
	}{
		{"subscriber token refused", "/required", sub, 401},
		{"publisher token", "/required", pub, 200},
		{"subscriber token, other key", "/other", sub, 401},
		{"publisher key", "/other", signToken(t, jwt.SigningMethodES256, k.ec, jwt.MapClaims{}), 200},
	} {
		if st, b := postPush(t, tc.URL(c.path), c.tok, body); st != c.status {
			t.Errorf("%s: status %d %s, want %d", c.name, st, b, c.status)
		}
	}
}
