// Package redis is the Redis broker: live fan-out over Pub/Sub, one channel
// per stream, so a node receives only the streams its connections need, and
// history in Redis Streams, so any node can serve a reconnect.
//
// Keys and channels (with the default prefix "caddyws:push:"), <t> being
// broker.EncodeName(stream), so any stream name is safe:
//
//	caddyws:push:{<t>}:h   the stream's history (a Redis Stream, XADD MAXLEN size, XTRIM MINID for the TTL)
//	caddyws:push:{<t>}:i   the history's index (a sorted set, offset -> entry id), so that
//	                       a page of history is read from its offset on, not from the start
//	caddyws:push:{<t>}:n   the stream's offset counter (INCR: offsets are consecutive)
//	caddyws:push:{<t>}:e   the stream's epoch, made when the counter starts; if the
//	                       keys are lost (FLUSHALL, eviction, a new server) a new
//	                       epoch is made, so older positions are "not recovered"
//	caddyws:push:c:<t>     the Pub/Sub channel
//
// The braces are a hash tag: a stream's keys live in one Redis Cluster slot,
// so one Lua script appends, counts and publishes atomically, which keeps
// offsets and Pub/Sub order identical across publishing nodes.
package redis

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddyws/caddyws/broker"
)

// Config is how to reach Redis.
type Config struct {
	// URL is a redis:// or rediss:// URL (user, password and db may be in
	// it). Either URL or Addrs.
	URL string
	// Addrs are host:port addresses: Redis Cluster nodes (one is enough),
	// one standalone server, or the sentinels when MasterName is set.
	Addrs []string
	// MasterName selects Redis Sentinel with this master.
	MasterName string
	// Cluster is "auto", "on" or "off": whether the server is a Redis
	// Cluster. auto asks the server (INFO cluster_enabled) when given one
	// address; on and off are checked against the server as well, and a
	// mismatch fails the start.
	Cluster string

	Username, Password string
	DB                 int

	// TLS turns TLS on (implied by rediss:// and by the options below).
	TLS                    bool
	TLSCA, TLSCert, TLSKey string
	TLSServerName          string

	// Prefix starts every key and channel this broker uses.
	Prefix string
	// Timeout bounds dialing and each command.
	Timeout time.Duration
	// ReconnectWait is the first pause between reconnect attempts of the
	// subscriber connection; it doubles up to 30s.
	ReconnectWait time.Duration
}

// Defaults.
const (
	DefaultPrefix        = "caddyws:push:"
	DefaultTimeout       = 2 * time.Second
	DefaultReconnectWait = 500 * time.Millisecond
)

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.Cluster == "" {
		c.Cluster = ClusterAuto
	}
}

// Cluster modes.
const (
	ClusterAuto = "auto"
	ClusterOn   = "on"
	ClusterOff  = "off"
)

// Validate reports configuration mistakes before anything connects.
func (c *Config) Validate() error {
	if (c.URL == "") == (len(c.Addrs) == 0) {
		return errors.New("redis broker: give either a url or addrs")
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return fmt.Errorf("redis broker: prefix %q may not contain braces (they are the hash tag)", c.Prefix)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("redis broker: tls cert and key go together")
	}
	if c.URL != "" {
		if _, err := goredis.ParseURL(c.URL); err != nil {
			return fmt.Errorf("redis broker: url %s: %w", broker.RedactURL(c.URL), broker.RedactError(err, c.URL))
		}
	}
	switch c.Cluster {
	case "", ClusterAuto, ClusterOn, ClusterOff:
	default:
		return fmt.Errorf("redis broker: cluster %q (want on, off or auto)", c.Cluster)
	}
	if c.MasterName != "" && c.Cluster == ClusterOn {
		return errors.New("redis broker: master_name (Sentinel) and cluster on exclude each other")
	}
	if c.MasterName == "" && c.Cluster == ClusterOff && len(c.Addrs) > 1 {
		return fmt.Errorf("redis broker: cluster off takes one address, not %d", len(c.Addrs))
	}
	if c.MasterName == "" && c.Cluster == ClusterOn && c.DB != 0 {
		return fmt.Errorf("redis broker: db %d: Redis Cluster has only db 0", c.DB)
	}
	if c.DB < 0 {
		return fmt.Errorf("redis broker: db %d", c.DB)
	}
	return nil
}

// universalOptions builds the client options. Commands are not retried: a
// retried EVALSHA whose reply was lost would publish twice; a failed publish
// is a 503 the publisher can retry knowingly.
func (c *Config) universalOptions() (*goredis.UniversalOptions, error) {
	u := &goredis.UniversalOptions{
		Addrs:        c.Addrs,
		MasterName:   c.MasterName,
		Username:     c.Username,
		Password:     c.Password,
		DB:           c.DB,
		DialTimeout:  c.Timeout,
		ReadTimeout:  c.Timeout,
		WriteTimeout: c.Timeout,
		MaxRetries:   -1,
		ClientName:   "caddyws",
	}
	var tc *tls.Config
	if c.URL != "" {
		o, err := goredis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("redis broker: url %s: %w", broker.RedactURL(c.URL), broker.RedactError(err, c.URL))
		}
		u.Addrs = []string{o.Addr}
		if u.Username == "" {
			u.Username = o.Username
		}
		if u.Password == "" {
			u.Password = o.Password
		}
		if u.DB == 0 {
			u.DB = o.DB
		}
		tc = o.TLSConfig
	}
	if c.TLS || c.TLSCA != "" || c.TLSCert != "" || c.TLSServerName != "" {
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if c.TLSServerName != "" {
			tc.ServerName = c.TLSServerName
		}
		if c.TLSCA != "" {
			pem, err := os.ReadFile(c.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("redis broker: reading tls ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("redis broker: no certificate in tls ca %s", c.TLSCA)
			}
			tc.RootCAs = pool
		}
		if c.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("redis broker: loading tls cert/key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	u.TLSConfig = tc
	return u, nil
}
