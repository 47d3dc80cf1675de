package caddyws

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestExecCaddyfileErrorsNameTheLine(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"websocket_tunnel {\n exec\n}", "a program is required"},
		{"websocket_tunnel {\n exec /bin/cat {\n  mode tty\n }\n}", "Testfile:3"},
		{"websocket_tunnel {\n exec /bin/cat {\n  colour red\n }\n}", `unknown option "colour"`},
		{"websocket_tunnel {\n exec /bin/cat {\n  env A 1\n  env A 2\n }\n}", "env A given twice"},
		{"websocket_tunnel {\n exec /bin/cat {\n  env A=B 1\n }\n}", "env name"},
		{"websocket_tunnel {\n exec /bin/cat {\n  kill_grace 0s\n }\n}", "kill_grace"},
		{"websocket_tunnel {\n exec /bin/cat {\n  max_line 1TiB\n }\n}", `exec: max_line "1TiB": want a size from 1B to 16MiB`},
		{"websocket_tunnel {\n exec /bin/cat {\n  mode tty\n }\n}", `exec: mode "tty": want lines, binary or pty`},
		{"websocket_tunnel {\n exec /bin/cat {\n  stderr file\n }\n}", `exec: stderr "file": want log or client`},
		{"websocket_tunnel {\n exec /bin/cat {\n  user a b\n }\n}", "Testfile:3"},
		{"websocket_tunnel {\n exec /bin/cat {\n  pass_header A\n  dir /a\n  pass_header B\n  dir /b\n }\n}", "exec: dir: option given twice"},
		{"websocket_tunnel {\n exec /bin/cat {\n  mode pty\n  mode lines\n }\n}", "given twice"},
		{"websocket_tunnel {\n exec /bin/cat {\n  allow_anonymous yes\n }\n}", "Testfile:3"},
	} {
		d := caddyfile.NewTestDispenser(tt.in)
		err := new(Tunnel).UnmarshalCaddyfile(d)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want an error with %q", tt.in, err, tt.want)
		}
	}
}

func TestExecExcludesOtherTargetSources(t *testing.T) {
	tt := &Tunnel{Upstream: "127.0.0.1:1", Exec: &ExecUpstream{Command: []string{"/bin/cat"}}}
	if err := tt.Validate(); err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Fatalf("got %v", err)
	}
}

func TestExecArgvKeepsPlaceholdersLiteral(t *testing.T) {
	d := caddyfile.NewTestDispenser("websocket_tunnel {\n exec /bin/echo {http.request.uri.query.x}\n}")
	tt := new(Tunnel)
	if err := tt.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if got := tt.Exec.Command; len(got) != 2 || got[1] != "{http.request.uri.query.x}" {
		t.Fatalf("command %q", got)
	}
}

func TestExecCaddyfileSetsTheStringOptions(t *testing.T) {
	d := caddyfile.NewTestDispenser("websocket_tunnel {\n exec /bin/cat {\n  dir /srv\n  user www\n  group staff\n  mode binary\n  stderr client\n }\n}")
	tt := new(Tunnel)
	if err := tt.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if e := tt.Exec; e.Dir != "/srv" || e.User != "www" || e.Group != "staff" || e.Mode != execBinary || e.Stderr != "client" {
		t.Fatalf("exec %+v", e)
	}
}
