package caddyws

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddyws/caddyws/broker"
	natsbroker "github.com/caddyws/caddyws/broker/nats"
)

func init() {
	caddy.RegisterModule(NATSBroker{})
}

// NATSBroker carries websocket_push messages between Caddy nodes through
// NATS, and keeps history in JetStream so that any node can serve a
// reconnect. Each node subscribes only to the streams its connections need.
// Every string field accepts placeholders such as {env.NATS_URL}.
type NATSBroker struct {
	// URL of the NATS server, or several separated by commas
	// (nats://host:4222, tls://host:4222). Required.
	URL string `json:"url,omitempty"`
	// Prefix starts every subject used. Default: caddyws.push.
	Prefix string `json:"prefix,omitempty"`
	// Stream is the JetStream stream that holds the history (created or
	// updated on start when history is on). Default: CADDYWS_PUSH.
	Stream string `json:"stream,omitempty"`
	// Storage of the JetStream stream: file or memory. Default: file.
	Storage string `json:"storage,omitempty"`
	// Replicas of the JetStream stream in a NATS cluster (1 to 5). When
	// set, a stream with fewer replicas is an error at start. When unset, a
	// new stream gets 3 on a NATS cluster (2 or 1 if JetStream cannot place
	// 3) and 1 on a single server; an existing stream keeps its replicas.
	// Default: 3 on a cluster, 1 on a single server.
	Replicas int `json:"replicas,omitempty"`
	// Username and Password authenticate with user/password. Default: none.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Token authenticates with a token. Default: none.
	Token string `json:"token,omitempty"`
	// Creds is a NATS credentials file (JWT + NKey). Default: none.
	Creds string `json:"creds,omitempty"`
	// NKey is a file holding an NKey seed. Default: none.
	NKey string `json:"nkey,omitempty"`
	// TLSCA is a PEM file of CAs to trust for the server. Default: system roots.
	TLSCA string `json:"tls_ca,omitempty"`
	// TLSCert and TLSKey are a client certificate for mutual TLS. Default: none.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
	// TLSServerName overrides the name checked in the server certificate.
	// Default: the URL's host.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// Timeout bounds each publish and history request; a publish that
	// cannot complete in time is answered 503. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// ReconnectWait is the first pause between reconnect attempts; it
	// doubles (with jitter) up to 30s. Reconnects never stop. Default: 1s.
	ReconnectWait caddy.Duration `json:"reconnect_wait,omitempty"`

	cfg natsbroker.Config
}

// CaddyModule returns the Caddy module information.
func (NATSBroker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "websocket_push.brokers.nats",
		New: func() caddy.Module { return new(NATSBroker) },
	}
}

// Provision resolves placeholders and checks the configuration.
func (n *NATSBroker) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	r := func(s string) string { return repl.ReplaceKnown(s, "") }
	n.cfg = natsbroker.Config{
		URL: r(n.URL), Prefix: r(n.Prefix), Stream: r(n.Stream), Storage: r(n.Storage), Replicas: n.Replicas,
		Username: r(n.Username), Password: r(n.Password), Token: r(n.Token),
		CredsFile: r(n.Creds), NKeyFile: r(n.NKey),
		TLSCA: r(n.TLSCA), TLSCert: r(n.TLSCert), TLSKey: r(n.TLSKey), TLSServerName: r(n.TLSServerName),
		Timeout: time.Duration(n.Timeout), ReconnectWait: time.Duration(n.ReconnectWait),
	}
	if err := n.cfg.Validate(); err != nil {
		return err
	}
	return registerBrokerMetrics(ctx)
}

// NewBroker returns an unstarted NATS broker.
func (n *NATSBroker) NewBroker(h broker.History, logger *zap.Logger) (broker.Broker, error) {
	b, err := natsbroker.New(n.cfg, h, logger)
	if err != nil {
		return nil, err
	}
	return track("nats", b), nil
}

// UnmarshalCaddyfile sets up the broker from Caddyfile tokens. Syntax:
//
//	broker nats <url> {
//		prefix          <subject prefix>
//		stream          <jetstream stream name>
//		storage         file|memory
//		replicas        <n>
//		username        <user>
//		password        <password>
//		token           <token>
//		creds           <file>
//		nkey            <seed file>
//		tls_ca          <pem file>
//		tls_cert        <pem file>
//		tls_key         <pem file>
//		tls_server_name <name>
//		timeout         <duration>
//		reconnect_wait  <duration>
//	}
func (n *NATSBroker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if !d.NextArg() {
		return d.ArgErr()
	}
	n.URL = d.Val()
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
		case "prefix":
			err = oneArg(d, &n.Prefix)
		case "stream":
			err = oneArg(d, &n.Stream)
		case "storage":
			err = oneArg(d, &n.Storage)
		case "replicas":
			n.Replicas, err = intArg(d)
		case "username":
			err = oneArg(d, &n.Username)
		case "password":
			err = oneArg(d, &n.Password)
		case "token":
			err = oneArg(d, &n.Token)
		case "creds":
			err = oneArg(d, &n.Creds)
		case "nkey":
			err = oneArg(d, &n.NKey)
		case "tls_ca":
			err = oneArg(d, &n.TLSCA)
		case "tls_cert":
			err = oneArg(d, &n.TLSCert)
		case "tls_key":
			err = oneArg(d, &n.TLSKey)
		case "tls_server_name":
			err = oneArg(d, &n.TLSServerName)
		case "timeout":
			err = durationArg(d, &n.Timeout, true)
		case "reconnect_wait":
			err = durationArg(d, &n.ReconnectWait, true)
		default:
			return d.Errf("unknown nats broker option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Module          = (*NATSBroker)(nil)
	_ caddy.Provisioner     = (*NATSBroker)(nil)
	_ BrokerFactory         = (*NATSBroker)(nil)
	_ caddyfile.Unmarshaler = (*NATSBroker)(nil)
)
