package caddyws

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func parsePushCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(Push)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	websocket_push [<matcher>] {
//		hub <name>
//
//		# who subscribes (exactly one auth line)
//		auth jwt {
//			alg          <HS256|RS256|ES256|...>   # default: what the key allows
//			key          <secret or PEM|{env.X}>
//			key_file     <path>
//			user_claim   <claim>                  # default sub
//			events_claim <claim>                  # default events
//			issuer       <iss>
//			audience     <aud>
//			leeway       <duration>               # default 30s
//			require      <claim> <value>
//		}
//		auth token_file <path>
//		auth callback <url> {
//			method    <POST|GET>                  # default POST
//			header    <name> <value>
//			timeout   <duration>                  # default 5s
//			cache_ttl <duration>                  # default 0 (off)
//		}
//		auth token_is_user
//		auth caddy [<placeholder>] {              # default {http.auth.user.id}
//			user <placeholder>                    # the same, as a subdirective
//		}
//		auth anonymous
//		token_param <name>                        # default token
//		token_cookie <name>                       # default caddyws_token
//		transports <websocket|sse...>             # default websocket sse
//
//		# who publishes (closed unless one is set)
//		publish_key  <key|{env.X}>
//		publish_jwt { <same as auth jwt> }
//		publish_auth none
//
//		origins <origin...>                       # default same origin
//		max_frame_size <size>                     # default 64KiB
//		max_events <n>                            # default 100
//		max_body_size <size>                      # default 1MiB
//		max_publish_targets <n>                   # default 1000
//		max_connections <n>
//		queue_bytes <size>                        # default 4MiB
//		max_connections_per_user <n>
//		queue_size <n>                            # default 256
//		ping_interval <duration>                  # default 25s
//		pong_timeout <duration>                   # default 10s
//		write_timeout <duration>                  # default 10s
//		auth_timeout <duration>                   # default 10s
//		history <size> [<ttl>]
//		broker <memory|nats|redis> [<args...>] {
//			...                                   # the broker module's own syntax
//		}
//	}
//
// Each option may appear once.
func (p *Push) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
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
		case "hub":
			if err = oneArg(d, &p.Hub); err == nil && strings.HasPrefix(p.Hub, siteHubPrefix) {
				return d.Errf("hub names starting with %q are reserved for the unnamed hub of a site, got %q", siteHubPrefix, p.Hub)
			}
		case "auth":
			p.Auth, err = parsePushAuth(d)
		case "token_param":
			if p.Auth == nil {
				return d.Err("token_param must follow auth")
			}
			err = oneArg(d, &p.Auth.TokenParam)
		case "token_cookie":
			if p.Auth == nil {
				return d.Err("token_cookie must follow auth")
			}
			err = oneArg(d, &p.Auth.TokenCookie)
		case "transports":
			p.Transports = d.RemainingArgs()
			if len(p.Transports) == 0 {
				return d.ArgErr()
			}
			for _, t := range p.Transports {
				if t != "websocket" && t != "sse" {
					return d.Errf("unknown transport %q (want websocket or sse)", t)
				}
			}
		case "publish_key":
			err = oneArg(d, &p.PublishKey)
		case "publish_jwt":
			if d.NextArg() {
				return d.ArgErr()
			}
			p.PublishJWT, err = parsePushJWT(d)
		case "publish_auth":
			if err = oneArg(d, &p.PublishAuth); err == nil && p.PublishAuth != "none" {
				return d.Errf("publish_auth takes only 'none', got %q", p.PublishAuth)
			}
		case "origins":
			p.Origins = d.RemainingArgs()
			if len(p.Origins) == 0 {
				return d.ArgErr()
			}
		case "max_frame_size":
			p.MaxFrameSize, err = pushSizeArg(d)
		case "max_body_size":
			p.MaxBodySize, err = pushSizeArg(d)
		case "max_events":
			p.MaxEvents, err = intArg(d)
		case "max_publish_targets":
			p.MaxPublishTargets, err = intArg(d)
		case "max_connections":
			p.MaxConnections, err = intArg(d)
		case "max_connections_per_user":
			p.MaxConnectionsPerUser, err = intArg(d)
		case "queue_size":
			p.QueueSize, err = intArg(d)
		case "queue_bytes":
			var n int64
			n, err = pushSizeArg(d)
			p.QueueBytes = int(n)
		case "ping_interval":
			err = durationArg(d, &p.PingInterval, false)
		case "pong_timeout":
			err = durationArg(d, &p.PongTimeout, false)
		case "write_timeout":
			err = durationArg(d, &p.WriteTimeout, false)
		case "auth_timeout":
			err = durationArg(d, &p.AuthTimeout, false)
		case "history":
			err = p.parseHistory(d)
		case "broker":
			err = p.parseBroker(d)
		default:
			return d.Errf("unknown websocket_push option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parsePushAuth(d *caddyfile.Dispenser) (*PushAuth, error) {
	a := &PushAuth{}
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	a.Mode = d.Val()
	switch a.Mode {
	case "jwt":
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		j, err := parsePushJWT(d)
		a.JWT = j
		return a, err
	case "token_file":
		if err := oneArg(d, &a.TokenFile); err != nil {
			return nil, err
		}
	case "callback":
		a.Callback = &PushCallback{}
		if err := oneArg(d, &a.Callback.URL); err != nil {
			return nil, err
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "timeout":
				if err := durationArg(d, &a.Callback.Timeout, false); err != nil {
					return nil, err
				}
			case "cache_ttl":
				if err := durationArg(d, &a.Callback.CacheTTL, false); err != nil {
					return nil, err
				}
			case "method":
				if err := oneArg(d, &a.Callback.Method); err != nil {
					return nil, err
				}
			case "header":
				args := d.RemainingArgs()
				if len(args) != 2 {
					return nil, d.ArgErr()
				}
				if a.Callback.Header == nil {
					a.Callback.Header = map[string][]string{}
				}
				a.Callback.Header[args[0]] = append(a.Callback.Header[args[0]], args[1])
			default:
				return nil, d.Errf("unknown callback option %q", d.Val())
			}
		}
	case "caddy":
		user := func() error {
			if _, err := userPlaceholder(a.User); err != nil {
				return d.WrapErr(err)
			}
			return nil
		}
		if d.NextArg() {
			a.User = d.Val()
			if err := user(); err != nil {
				return nil, err
			}
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			if d.Val() != "user" {
				return nil, d.Errf("unknown auth caddy option %q", d.Val())
			}
			if a.User != "" {
				return nil, d.Err("auth caddy: the user placeholder is given twice")
			}
			if err := oneArg(d, &a.User); err != nil {
				return nil, err
			}
			if err := user(); err != nil {
				return nil, err
			}
		}
	case "token_is_user", "anonymous":
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	default:
		return nil, d.Errf("unknown auth mode %q (want jwt, token_file, callback, token_is_user, caddy or anonymous)", a.Mode)
	}
	return a, nil
}

func parsePushJWT(d *caddyfile.Dispenser) (*PushJWT, error) {
	j := &PushJWT{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] && opt != "require" {
			return nil, d.Errf("duplicate jwt option %q", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "alg":
			err = oneArg(d, &j.Alg)
		case "key":
			err = oneArg(d, &j.Key)
		case "key_file":
			err = oneArg(d, &j.KeyFile)
		case "user_claim":
			err = oneArg(d, &j.UserClaim)
		case "events_claim":
			err = oneArg(d, &j.EventsClaim)
		case "issuer":
			err = oneArg(d, &j.Issuer)
		case "audience":
			err = oneArg(d, &j.Audience)
		case "leeway":
			err = durationArg(d, &j.Leeway, false)
		case "require":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.ArgErr()
			}
			if j.Require == nil {
				j.Require = map[string]string{}
			}
			j.Require[args[0]] = args[1]
		default:
			return nil, d.Errf("unknown jwt option %q", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	if (j.Key == "") == (j.KeyFile == "") {
		return nil, d.Err("jwt needs exactly one of key and key_file")
	}
	return j, nil
}

func (p *Push) parseHistory(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 {
		return d.Errf("history size must be a non-negative integer, got %q", args[0])
	}
	p.History = &PushHistory{Size: n}
	if len(args) == 2 {
		ttl, err := caddy.ParseDuration(args[1])
		if err != nil || ttl < 0 {
			return d.Errf("history ttl: bad duration %q", args[1])
		}
		p.History.TTL = caddy.Duration(ttl)
	}
	return nil
}

func (p *Push) parseBroker(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	// The segment starts at the current token, so the module's
	// UnmarshalCaddyfile sees "<name> [args] { ... }".
	mod, err := caddyfile.UnmarshalModule(d, "websocket_push.brokers."+name)
	if err != nil {
		return err
	}
	p.BrokerRaw = caddyconfig.JSONModuleObject(mod, "type", name, nil)
	return nil
}

func pushSizeArg(d *caddyfile.Dispenser) (int64, error) {
	var s string
	if err := oneArg(d, &s); err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > 1<<40 {
		return 0, d.Errf("bad size %q", s)
	}
	return int64(n), nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Push)(nil)
