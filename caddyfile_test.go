package caddyws

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestTunnelCaddyfileAdaptsToGoldenJSON checks testdata/tunnel/*.caddytest
// (a Caddyfile, a line of dashes, the adapted JSON). Regenerate with
// CADDYWS_UPDATE_GOLDEN=1 and review the diff.
func TestTunnelCaddyfileAdaptsToGoldenJSON(t *testing.T) {
	files, _ := filepath.Glob("testdata/tunnel/*.caddytest")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, found := strings.Cut(string(raw), "----------\n")
			if os.Getenv("CADDYWS_UPDATE_GOLDEN") != "" {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(in), nil)
				if err != nil {
					t.Fatal(err)
				}
				var pretty bytes.Buffer
				_ = json.Indent(&pretty, out, "", "\t")
				if err := os.WriteFile(f, []byte(in+"----------\n"+pretty.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !found {
				t.Fatalf("%s has no ---------- separator", f)
			}
			if !caddytest.CompareAdapt(t, f, in, "caddyfile", strings.TrimRight(want, "\n")) {
				t.Fatalf("%s: adapted JSON differs from the golden file", f)
			}
		})
	}
}

func dur(d time.Duration) *caddy.Duration { c := caddy.Duration(d); return &c }

func TestTunnelCaddyfileParsesOptions(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Tunnel
	}{
		{`websocket_tunnel 127.0.0.1:5900`, Tunnel{Upstream: "127.0.0.1:5900"}},
		{`websocket_tunnel unix//run/x.sock`, Tunnel{Upstream: "unix//run/x.sock"}},
		{`websocket_tunnel {
			upstream [::1]:22
			dial_timeout 2s
			idle_timeout 1m
			write_timeout 3s
			close_delay 0s
			max_connections 5
			buffer_size 8KiB
		}`, Tunnel{Upstream: "[::1]:22", DialTimeout: caddy.Duration(2 * time.Second), IdleTimeout: caddy.Duration(time.Minute),
			WriteTimeout: caddy.Duration(3 * time.Second), CloseDelay: dur(0), MaxConnections: 5, BufferSize: 8192}},
		{`websocket_tunnel {
			jwt_key /etc/caddy/ticket.pub
			jwt_alg ES256
		}`, Tunnel{JWTKey: "/etc/caddy/ticket.pub", JWTAlg: "ES256"}},
		{`websocket_tunnel {
			targets /tokens
			token_param tok
			allow 10.0.0.0/8 host:1-2
			allow unix//a
			origins *
			subprotocols binary
			subprotocols tty
		}`, Tunnel{Targets: "/tokens", TokenParam: "tok", Allow: []string{"10.0.0.0/8", "host:1-2", "unix//a"},
			Origins: []string{"*"}, Subprotocols: []string{"binary", "tty"}}},
		{`websocket_tunnel {
			jwt_key {env.KEY}
		}`, Tunnel{JWTKey: "{env.KEY}"}},
	} {
		var got Tunnel
		if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.in)); err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Fatalf("%s:\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
	}
}

func TestTunnelCaddyfileErrorsNameFileAndLine(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		line     int
	}{
		{"websocket_tunnel a:1 b:2", "wrong argument count", 1},
		{"websocket_tunnel a:1 {\n\tupstream b:2\n}", "given twice", 2},
		{"websocket_tunnel {\n\tupstream a:1\n\tdial_timeout 1s\n\tdial_timeout 2s\n}", "given twice", 4},
		{"websocket_tunnel {\n\tupstream a:1\n\tbogus 1\n}", `unknown websocket_tunnel option "bogus"`, 3},
		{"websocket_tunnel {\n\tupstream\n}", "wrong argument count", 2},
		{"websocket_tunnel {\n\tupstream a:1\n\tdial_timeout soon\n}", "dial_timeout", 3},
		{"websocket_tunnel {\n\tupstream a:1\n\tidle_timeout -1s\n}", "negative", 3},
		{"websocket_tunnel {\n\tupstream a:1\n\twrite_timeout -1s\n}", "negative", 3},
		{"websocket_tunnel {\n\tupstream a:1\n\tmax_connections many\n}", "max_connections", 3},
		{"websocket_tunnel {\n\tupstream a:1\n\tbuffer_size 10\n}", `buffer_size "10": want a size from 1KiB to 16MiB`, 3},
		{"websocket_tunnel {\n\tupstream a:1\n\tallow\n}", "wrong argument count", 3},
		{"websocket_tunnel {\n\tupstream a:1\n\torigins\n}", "wrong argument count", 3},
		{"websocket_tunnel {\n\tupstream a:1\n\tallow 10.0.0.0/33\n}", "bad CIDR", 3},
		{"websocket_tunnel {\n\tupstream a:99999\n}", "port", 2},
		{"websocket_tunnel nohost", "host:port", 1},
		{"websocket_tunnel {\n\tupstream a:1\n\tjwt_key a b\n}", "wrong argument count", 3},
	} {
		var tun Tunnel
		d := caddyfile.NewTestDispenser(tt.in)
		err := tun.UnmarshalCaddyfile(d)
		if err == nil {
			t.Fatalf("%q: no error", tt.in)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("%q: error %q does not contain %q", tt.in, err, tt.want)
		}
		if wantPos := "Testfile:" + strconv.Itoa(tt.line); !strings.Contains(err.Error(), wantPos) {
			t.Fatalf("%q: error %q does not name %s", tt.in, err, wantPos)
		}
	}
}

// FuzzTunnelCaddyfile feeds arbitrary directive bodies to the parser: it
// must never panic, and whatever it accepts must survive a JSON round trip.
func FuzzTunnelCaddyfile(f *testing.F) {
	for _, s := range []string{
		"websocket_tunnel 127.0.0.1:5900",
		"websocket_tunnel {\n\ttargets /t\n\tallow 10.0.0.0/8:1-2,3 [::1]:4 unix//x\n}",
		"websocket_tunnel {\n\tjwt_key {env.K}\n\ttoken_param x\n\torigins *\n}",
		"websocket_tunnel a:1 {\n\tbuffer_size 1MiB\n\tclose_delay 1h\n\tmax_connections 3\n}",
		"websocket_tunnel {\n}\n",
		"websocket_tunnel \"a b\" {",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var tun Tunnel
		if err := tun.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
			return
		}
		b, err := json.Marshal(&tun)
		if err != nil {
			t.Fatalf("accepted config does not marshal: %v", err)
		}
		var back Tunnel
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if !reflect.DeepEqual(back, tun) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", tun, back)
		}
	})
}
