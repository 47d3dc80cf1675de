package caddyws

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	redisbroker "github.com/caddyws/caddyws/broker/redis"
)

func init() {
	caddy.RegisterModule(RedisBroker{})
}

// RedisBroker carries websocket_push messages between Caddy nodes through
// Redis Pub/Sub, and keeps history in Redis Streams so that any node can
// serve a reconnect. Each node subscribes only to the streams its
// connections need. Standalone Redis or Redis Cluster by URL or addrs (the
// broker asks the server which it is, see Cluster); Sentinel with addrs and
// master_name. Every string field accepts placeholders such as
// {env.REDIS_URL}.
type RedisBroker struct {
	// URL is redis://[user:password@]host:port[/db], or rediss:// for TLS.
	// Either URL or Addrs is required.
	URL string `json:"url,omitempty"`
	// Addrs are host:port addresses: Redis Cluster nodes (one is enough),
	// a standalone server, or the sentinels when MasterName is set.
	// Default: none.
	Addrs []string `json:"addrs,omitempty"`
	// MasterName selects Redis Sentinel with this master. Default: none.
	MasterName string `json:"master_name,omitempty"`
	// Cluster says whether Redis is a Redis Cluster: on, off or auto. auto
	// asks the server at start (INFO cluster), so one cluster node's
	// address or URL is enough; on and off are checked against the server
	// too, and a mismatch fails the config load. Default: auto.
	Cluster string `json:"cluster,omitempty"`
	// Username and Password (ACL or requirepass); override the URL's.
	// Default: the URL's, else none.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// DB is the database number (standalone and sentinel). Default: the
	// URL's, else 0.
	DB int `json:"db,omitempty"`
	// TLS turns TLS on (rediss:// does too). Default: false.
	TLS bool `json:"tls,omitempty"`
	// TLSCA is a PEM file of CAs to trust for the server. Default: system roots.
	TLSCA string `json:"tls_ca,omitempty"`
	// TLSCert and TLSKey are a client certificate for mutual TLS. Default: none.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
	// TLSServerName overrides the name checked in the server certificate.
	// Default: the host.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// Prefix starts every key and channel used. Default: caddyws:push:.
	Prefix string `json:"prefix,omitempty"`
	// Timeout bounds dialing and each command; a publish that cannot
	// complete in time is answered 503. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// ReconnectWait is the first pause between reconnect attempts of the
	// subscriber connection; it doubles (with jitter) up to 30s. Reconnects
	// never stop. Default: 500ms.
	ReconnectWait caddy.Duration `json:"reconnect_wait,omitempty"`

	cfg redisbroker.Config
}

// CaddyModule returns the Caddy module information.
func (RedisBroker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "websocket_push.brokers.redis",
		New: func() caddy.Module { return new(RedisBroker) },
	}
}

// Provision resolves placeholders and checks the configuration.
func (r *RedisBroker) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	s := func(v string) string { return repl.ReplaceKnown(v, "") }
	var addrs []string
	for _, a := range r.Addrs {
		addrs = append(addrs, s(a))
	}
	r.cfg = redisbroker.Config{
		URL: s(r.URL), Addrs: addrs, MasterName: s(r.MasterName), Cluster: s(r.Cluster),
		Username: s(r.Username), Password: s(r.Password), DB: r.DB,
		TLS: r.TLS, TLSCA: s(r.TLSCA), TLSCert: s(r.TLSCert), TLSKey: s(r.TLSKey), TLSServerName: s(r.TLSServerName),
		Prefix: s(r.Prefix), Timeout: time.Duration(r.Timeout), ReconnectWait: time.Duration(r.ReconnectWait),
	}
	if err := r.cfg.Validate(); err != nil {
		return err
	}
	return registerBrokerMetrics(ctx)
}

// NewBroker returns an unstarted Redis broker.
func (r *RedisBroker) NewBroker(h broker.History, logger *zap.Logger) (broker.Broker, error) {
	b, err := redisbroker.New(r.cfg, h, logger)
	if err != nil {
		return nil, err
	}
	return track("redis", b), nil
}

// UnmarshalCaddyfile sets up the broker from Caddyfile tokens. Syntax:
//
//	broker redis [<url>] {
//		addrs           <host:port...>
//		master_name     <name>
//		cluster         on|off|auto
//		username        <user>
//		password        <password>
//		db              <n>
//		tls
//		tls_ca          <pem file>
//		tls_cert        <pem file>
//		tls_key         <pem file>
//		tls_server_name <name>
//		prefix          <key prefix>
//		timeout         <duration>
//		reconnect_wait  <duration>
//	}
func (r *RedisBroker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		r.URL = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("duplicate option %q", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "addrs":
			r.Addrs = d.RemainingArgs()
			if len(r.Addrs) == 0 {
				return d.ArgErr()
			}
		case "master_name":
			err = oneArg(d, &r.MasterName)
		case "cluster":
			if err = oneArg(d, &r.Cluster); err == nil && r.Cluster != "on" && r.Cluster != "off" && r.Cluster != "auto" {
				return d.Errf("cluster %q: want on, off or auto", r.Cluster)
			}
		case "username":
			err = oneArg(d, &r.Username)
		case "password":
			err = oneArg(d, &r.Password)
		case "db":
			r.DB, err = intArg(d)
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			r.TLS = true
		case "tls_ca":
			err = oneArg(d, &r.TLSCA)
		case "tls_cert":
			err = oneArg(d, &r.TLSCert)
		case "tls_key":
			err = oneArg(d, &r.TLSKey)
		case "tls_server_name":
			err = oneArg(d, &r.TLSServerName)
		case "prefix":
			err = oneArg(d, &r.Prefix)
		case "timeout":
			err = durationArg(d, &r.Timeout, true)
		case "reconnect_wait":
			err = durationArg(d, &r.ReconnectWait, true)
		default:
			return d.Errf("unknown redis broker option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	if r.URL == "" && len(r.Addrs) == 0 {
		return d.Err("broker redis needs a url or addrs")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Module          = (*RedisBroker)(nil)
	_ caddy.Provisioner     = (*RedisBroker)(nil)
	_ BrokerFactory         = (*RedisBroker)(nil)
	_ caddyfile.Unmarshaler = (*RedisBroker)(nil)
)
