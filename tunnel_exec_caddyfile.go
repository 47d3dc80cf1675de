package caddyws

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalExec reads the exec subdirective of websocket_tunnel. Syntax:
//
//	exec <program> [<args...>] {
//	    mode            lines|binary|pty     # default lines
//	    env             <NAME> <value>       # repeatable; value may hold placeholders (untrusted input)
//	    pass_header     <Header-Name> ...    # repeatable; passed as HTTP_HEADER_NAME
//	    dir             <path>               # working directory; default Caddy's
//	    user            <name|uid>           # needs Caddy to run as root
//	    group           <name|gid>           # default the user's primary group
//	    kill_grace      <duration>           # SIGHUP+SIGINT, then SIGKILL after this; default 3s
//	    stderr          log|client           # default log
//	    max_line        <size>               # lines mode; default 64KiB
//	    allow_anonymous                      # start without an authenticated user
//	}
//
// The program and its arguments are taken literally: placeholders in them
// are never replaced, so nothing from a request reaches argv.
func unmarshalExec(d *caddyfile.Dispenser) (*ExecUpstream, error) {
	e := &ExecUpstream{Command: d.RemainingArgs()}
	if len(e.Command) == 0 {
		return nil, d.Err("exec: a program is required")
	}
	strs := map[string]*string{"dir": &e.Dir, "user": &e.User, "group": &e.Group}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if err := onceOnly(d, seen, "exec: ", "env", "pass_header"); err != nil {
			return nil, err
		}
		switch opt {
		case "mode":
			if err := choiceArg(d, "exec: ", &e.Mode, execLines, execBinary, execPTY); err != nil {
				return nil, err
			}
		case "stderr":
			if err := choiceArg(d, "exec: ", &e.Stderr, "log", "client"); err != nil {
				return nil, err
			}
		case "dir", "user", "group":
			if err := oneArg(d, strs[opt]); err != nil {
				return nil, err
			}
		case "env":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Err("exec: env wants a name and a value")
			}
			if strings.ContainsAny(args[0], "={}\x00") {
				return nil, d.Errf("exec: env name %q: no '=', placeholder or NUL allowed", args[0])
			}
			if _, dup := e.Env[args[0]]; dup {
				return nil, d.Errf("exec: env %s given twice", args[0])
			}
			if e.Env == nil {
				e.Env = map[string]string{}
			}
			e.Env[args[0]] = args[1]
		case "pass_header":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			e.PassHeader = append(e.PassHeader, args...)
		case "kill_grace":
			var v string
			if err := oneArg(d, &v); err != nil {
				return nil, err
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return nil, d.Errf("exec: kill_grace %q: want a positive duration", v)
			}
			e.KillGrace = caddy.Duration(dur)
		case "max_line":
			n, err := sizeArg(d, "exec: ", 1, 16<<20)
			if err != nil {
				return nil, err
			}
			e.MaxLine = n
		case "allow_anonymous":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			e.AllowAnonymous = true
		default:
			return nil, d.Errf("exec: unknown option %q", opt)
		}
	}
	return e, nil
}
