package caddyws

import (
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddyws/caddyws/internal/tunnel"
)

func parseTunnelCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	t := new(Tunnel)
	err := t.UnmarshalCaddyfile(h.Dispenser)
	return t, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	websocket_tunnel [<matcher>] [<upstream>] {
//	    upstream        <host:port> | unix/<path>      # fixed target; placeholders allowed (then held to allow)
//	    targets         <file|dir>                     # or: websockify token file ("token: host:port")
//	    jwt_key         <file> | <{env.VAR}>           # or: signed tickets naming their target
//	    jwt_alg         <HS256|RS256|ES256|EdDSA|...>  # default: what the key allows
//	    token_param     <name>                         # query parameter with the token/ticket; default token
//	    allow           <cidr|ip|host|unix/path>[:<ports>] ...
//	    subprotocols    <name> ...                     # default binary
//	    origins         <origin> ...                   # default: same origin only
//	    dial_timeout    <duration>                     # default 10s
//	    idle_timeout    <duration>                     # default none
//	    write_timeout   <duration>                     # a client that accepts no data this long ends the tunnel; default 10s
//	    max_connections <n>                            # default unlimited
//	    buffer_size     <size>                         # default 64KiB
//	    close_delay     <duration>                     # on reload; default: keep tunnels open
//	    exec            <program> [<args...>] { ... }  # or: run a program per connection (see unmarshalExec)
//	}
//
// The list options (allow, subprotocols, origins) may be repeated and add
// up; any other option given twice, an unknown option or a missing argument
// is an error naming the file and line.
func (t *Tunnel) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		if err := checkUpstream(d, d.Val()); err != nil {
			return err
		}
		t.Upstream = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	strs := map[string]*string{"targets": &t.Targets, "jwt_key": &t.JWTKey, "jwt_alg": &t.JWTAlg, "token_param": &t.TokenParam}
	seen := map[string]bool{}
	if t.Upstream != "" {
		seen["upstream"] = true
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if err := onceOnly(d, seen, "", "allow", "subprotocols", "origins"); err != nil {
			return err
		}
		switch opt {
		case "upstream":
			if err := oneArg(d, &t.Upstream); err != nil {
				return err
			}
			if err := checkUpstream(d, t.Upstream); err != nil {
				return err
			}
		case "targets", "jwt_key", "jwt_alg", "token_param":
			if err := oneArg(d, strs[opt]); err != nil {
				return err
			}
		case "allow", "subprotocols", "origins":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			switch opt {
			case "allow":
				if _, err := tunnel.ParseAllowList(args); err != nil {
					return d.Errf("%v", err)
				}
				t.Allow = append(t.Allow, args...)
			case "subprotocols":
				t.Subprotocols = append(t.Subprotocols, args...)
			case "origins":
				t.Origins = append(t.Origins, args...)
			}
		case "dial_timeout", "idle_timeout", "write_timeout", "close_delay":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("%s %q: %v", opt, v, err)
			}
			if dur < 0 {
				return d.Errf("%s: cannot be negative", opt)
			}
			switch opt {
			case "dial_timeout":
				t.DialTimeout = caddy.Duration(dur)
			case "idle_timeout":
				t.IdleTimeout = caddy.Duration(dur)
			case "write_timeout":
				t.WriteTimeout = caddy.Duration(dur)
			case "close_delay":
				cd := caddy.Duration(dur)
				t.CloseDelay = &cd
			}
		case "exec":
			e, err := unmarshalExec(d)
			if err != nil {
				return err
			}
			t.Exec = e
		case "max_connections":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("max_connections %q: want a whole number >= 0", v)
			}
			t.MaxConnections = n
		case "buffer_size":
			n, err := sizeArg(d, "", 1<<10, 16<<20)
			if err != nil {
				return err
			}
			t.BufferSize = n
		default:
			return d.Errf("unknown websocket_tunnel option %q", opt)
		}
	}
	return nil // Validate checks that exactly one target source is set
}

// checkUpstream reports a malformed fixed upstream at its line; one with
// placeholders is checked per request.
func checkUpstream(d *caddyfile.Dispenser, v string) error {
	if strings.Contains(v, "{") {
		return nil
	}
	if _, err := tunnel.ParseTarget(v); err != nil {
		return d.Errf("upstream: %v", err)
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Tunnel)(nil)

// oneArg reads the single argument of the current option into dst. The
// option readers below are shared by both directives and the broker modules.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// onceOnly records the current option in seen and refuses it when the
// block gave it before, unless it is one of the repeatable (list) options,
// which add up. prefix names the enclosing block in the error ("exec: ").
func onceOnly(d *caddyfile.Dispenser, seen map[string]bool, prefix string, repeatable ...string) error {
	opt := d.Val()
	if seen[opt] && !slices.Contains(repeatable, opt) {
		return d.Errf("%s%s: option given twice", prefix, opt)
	}
	seen[opt] = true
	return nil
}

// choiceArg reads an argument that must be one of choices.
func choiceArg(d *caddyfile.Dispenser, prefix string, dst *string, choices ...string) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	if !slices.Contains(choices, s) {
		last := len(choices) - 1
		return d.Errf("%s%s %q: want %s or %s", prefix, opt, s, strings.Join(choices[:last], ", "), choices[last])
	}
	*dst = s
	return nil
}

// sizeArg reads a size argument (64KiB, 1MB, 512) from lo to hi bytes.
func sizeArg(d *caddyfile.Dispenser, prefix string, lo, hi uint64) (int, error) {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n < lo || n > hi {
		return 0, d.Errf("%s%s %q: want a size from %s to %s", prefix, opt, s, sizeText(lo), sizeText(hi))
	}
	return int(n), nil
}

// sizeText writes a bound the way the docs do: 1B, 1KiB, 16MiB.
func sizeText(n uint64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatUint(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatUint(n>>10, 10) + "KiB"
	}
	return strconv.FormatUint(n, 10) + "B"
}

// intArg reads a non-negative integer argument.
func intArg(d *caddyfile.Dispenser) (int, error) {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, d.Errf("%s: want a non-negative integer, got %q", opt, s)
	}
	return n, nil
}

// durationArg reads a duration argument: zero or more, or more than zero
// when positive is set.
func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration, positive bool) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v < 0 || (positive && v == 0) {
		return d.Errf("bad duration %q", s)
	}
	*dst = caddy.Duration(v)
	return nil
}
