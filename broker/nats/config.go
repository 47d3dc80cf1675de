// Package nats is the NATS broker: live fan-out over core NATS subjects, one
// per stream, so a node receives only the streams its connections need, and
// history in a JetStream stream, so any node can serve a reconnect.
//
// Subjects (with the default prefix "caddyws.push"):
//
//	caddyws.push.s.<token>  where publishes go (stored by JetStream when history is on)
//	caddyws.push.r.<token>  what nodes subscribe to: JetStream republishes every
//	                        stored message here with its sequence and the sequence
//	                        of the previous message of the same subject; with
//	                        history off, publishes go here directly
//
// <token> is broker.EncodeName(stream), so any stream name is safe.
//
// Positions are JetStream stream sequences: they increase per stream but are
// not consecutive (sequences are shared by all streams). The epoch is the
// JetStream stream's creation time, so a deleted or lost JetStream stream is
// a new epoch. A position is recoverable while its own message is still kept
// (JetStream keeps history size + 1 messages per subject for this), which is
// the proof that nothing after it was evicted.
package nats

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	gonats "github.com/nats-io/nats.go"

	"github.com/caddyws/caddyws/broker"
)

// Config is how to reach NATS and where to keep history.
type Config struct {
	// URL is one or more comma-separated server URLs (nats://, tls://).
	URL string
	// Prefix starts every subject this broker uses.
	Prefix string
	// Stream is the JetStream stream name holding history.
	Stream string
	// Storage is "file" or "memory" for the JetStream stream.
	Storage string
	// Replicas of the JetStream stream (clustered JetStream); 0 picks 3 on
	// a cluster, 1 on a single server (see putStream).
	Replicas int

	Username, Password string
	Token              string
	CredsFile          string
	NKeyFile           string

	TLSCA, TLSCert, TLSKey string
	TLSServerName          string

	// Timeout bounds each publish and history request.
	Timeout time.Duration
	// ReconnectWait is the pause between reconnect attempts (plus jitter).
	ReconnectWait time.Duration
	// Name is the connection name shown by the NATS server.
	Name string
}

// Defaults.
const (
	DefaultPrefix        = "caddyws.push"
	DefaultStream        = "CADDYWS_PUSH"
	DefaultTimeout       = 2 * time.Second
	DefaultReconnectWait = time.Second
)

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Storage == "" {
		c.Storage = "file"
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.Name == "" {
		c.Name = "caddyws"
	}
}

// Validate reports configuration mistakes before anything connects.
func (c *Config) Validate() error {
	if strings.TrimSpace(c.URL) == "" {
		return errors.New("nats broker: url is required")
	}
	for _, u := range strings.Split(c.URL, ",") {
		u = strings.TrimSpace(u)
		if i := strings.Index(u, "://"); i >= 0 {
			switch strings.ToLower(u[:i]) {
			case "nats", "tls", "ws", "wss":
			default:
				return fmt.Errorf("nats broker: url %q: scheme %q is not NATS (nats://, tls://, ws://, wss://)", broker.RedactURL(u), u[:i])
			}
		}
	}
	if strings.ContainsAny(c.Prefix, " \t\r\n*>") || strings.HasPrefix(c.Prefix, ".") || strings.HasSuffix(c.Prefix, ".") {
		return fmt.Errorf("nats broker: prefix %q must be plain subject tokens (no spaces, wildcards, or leading/trailing dots)", c.Prefix)
	}
	if strings.ContainsAny(c.Stream, " \t\r\n.*>/\\") {
		return fmt.Errorf("nats broker: stream name %q may not contain spaces, '.', '*', '>', '/' or '\\'", c.Stream)
	}
	if c.Storage != "" && c.Storage != "file" && c.Storage != "memory" {
		return fmt.Errorf("nats broker: storage %q (want file or memory)", c.Storage)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("nats broker: replicas %d (JetStream allows 1 to 5)", c.Replicas)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("nats broker: tls cert and key go together")
	}
	n := 0
	for _, set := range []bool{c.Username != "" || c.Password != "", c.Token != "", c.CredsFile != "", c.NKeyFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("nats broker: use one of user/password, token, creds or nkey")
	}
	return nil
}

// natsOptions returns the client options: reconnect forever with back-off
// and jitter, fail publishes at once while disconnected (no reconnect buffer:
// a publish that cannot reach NATS must be a 503 now, not a silent loss
// later), no echo of our own publishes.
func (c *Config) natsOptions(b *Broker) ([]gonats.Option, error) {
	opts := []gonats.Option{
		gonats.Name(c.Name),
		gonats.NoEcho(),
		gonats.MaxReconnects(-1),
		gonats.RetryOnFailedConnect(true),
		gonats.CustomReconnectDelay(backoff(c.ReconnectWait)),
		gonats.ReconnectBufSize(-1),
		gonats.Timeout(c.Timeout),
		gonats.PingInterval(10 * time.Second),
		gonats.MaxPingsOutstanding(2),
		gonats.DisconnectErrHandler(b.onDisconnect),
		gonats.ReconnectHandler(b.onReconnect),
		gonats.ConnectHandler(b.onConnect),
		gonats.ErrorHandler(b.onAsyncError),
	}
	switch {
	case c.Username != "" || c.Password != "":
		opts = append(opts, gonats.UserInfo(c.Username, c.Password))
	case c.Token != "":
		opts = append(opts, gonats.Token(c.Token))
	case c.CredsFile != "":
		opts = append(opts, gonats.UserCredentials(c.CredsFile))
	case c.NKeyFile != "":
		o, err := gonats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats broker: nkey seed %s: %w", c.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if c.TLSCA != "" || c.TLSCert != "" || c.TLSServerName != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
		if c.TLSCA != "" {
			pem, err := os.ReadFile(c.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("nats broker: reading tls ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("nats broker: no certificate in tls ca %s", c.TLSCA)
			}
			tc.RootCAs = pool
		}
		if c.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("nats broker: loading tls cert/key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, gonats.Secure(tc))
	}
	return opts, nil
}

// backoff doubles the wait per failed attempt up to 30 times the base (and
// at most 30s), so a long outage does not hammer the server, with +-25%
// jitter so that many nodes do not reconnect in lockstep.
func backoff(base time.Duration) func(attempts int) time.Duration {
	return func(attempts int) time.Duration {
		d := base
		for i := 1; i < attempts && d < 30*time.Second && d < 30*base; i++ {
			d *= 2
		}
		if d > 30*time.Second {
			d = 30 * time.Second
		}
		return d*3/4 + rand.N(d/2+1)
	}
}
