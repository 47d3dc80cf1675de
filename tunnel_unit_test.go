package caddyws

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// provisionedTunnel provisions t outside a running Caddy, logging to an
// observer.
func provisionedTunnel(t *testing.T, tun *Tunnel) *observer.ObservedLogs {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := tun.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tun.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	tun.logger = zap.New(core)
	return logs
}

// TestTunnelValidateNeedsExactlyOneTargetSource: the Caddyfile parser only
// parses; the rule lives in Validate, for JSON and Caddyfile configs alike.
func TestTunnelValidateNeedsExactlyOneTargetSource(t *testing.T) {
	for _, in := range []string{
		"websocket_tunnel",
		"websocket_tunnel {\n\tupstream a:1\n\ttargets /f\n}",
		"websocket_tunnel {\n\ttargets /f\n\tjwt_key /k\n}",
	} {
		var tun Tunnel
		if err := tun.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
			t.Fatalf("%q: parsing: %v", in, err)
		}
		if err := tun.Validate(); err == nil || !strings.Contains(err.Error(), "exactly one of") {
			t.Fatalf("%q: Validate: %v, want the exactly-one rule", in, err)
		}
	}
}

func serveTunnel(t *testing.T, tun *Tunnel) *httptest.Server {
	t.Helper()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		_, err := w.Write([]byte("next"))
		return err
	})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = tun.ServeHTTP(w, r, next)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestTunnelLogsOneStructuredLinePerTunnel(t *testing.T) {
	up := tcpEcho(t)
	tun := &Tunnel{Upstream: up}
	logs := provisionedTunnel(t, tun)
	s := serveTunnel(t, tun)
	c := mustTunnel(t, "ws"+strings.TrimPrefix(s.URL, "http")+"/", nil)
	echoRoundTrip(t, c, "twelve bytes")
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	expectTunnelClose(t, c, 1000, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("tunnel closed").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lines := logs.FilterMessage("tunnel closed").All()
	if len(lines) != 1 {
		t.Fatalf("%d 'tunnel closed' lines, want 1", len(lines))
	}
	f := lines[0].ContextMap()
	if f["upstream"] != up || f["bytes_up"] != int64(12) || f["bytes_down"] != int64(12) ||
		f["ended_by"] != "client" || f["close_code"] != int64(1000) || f["client"] == "" || f["duration"] == nil {
		t.Fatalf("log fields %v", f)
	}
}

func TestTunnelAnswersExtendedConnectWithClearError(t *testing.T) {
	tun := &Tunnel{Upstream: "127.0.0.1:1"}
	r := httptest.NewRequest(http.MethodConnect, "/", nil)
	r.Proto = "websocket" // how quic-go marks an HTTP/3 extended CONNECT
	w := httptest.NewRecorder()
	called := false
	_ = tun.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		called = true
		return nil
	}))
	if called || w.Code != http.StatusNotImplemented || !strings.Contains(w.Body.String(), "HTTP/1.1") {
		t.Fatalf("status %d body %q next called %v", w.Code, w.Body.String(), called)
	}
}

func TestTunnelExportsMetrics(t *testing.T) {
	tc := startTunnelCaddy(t, `http://localhost:@HTTP@ {
	websocket_tunnel /ok `+tcpEcho(t)+`
	websocket_tunnel /dead `+deadAddr(t)+`
	websocket_tunnel /exec {
		exec /nonexistent/program {
			allow_anonymous
		}
	}
}`)
	c := mustTunnel(t, tc.WSURL("/ok"), nil)
	echoRoundTrip(t, c, "12345")
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	expectTunnelClose(t, c, 1000, 5*time.Second)
	expectTunnelClose(t, mustTunnel(t, tc.WSURL("/dead"), nil), 1011, 5*time.Second)
	if c, status, _ := wsDial(t, tc.WSURL("/ok"), originHeader("https://evil.example")); c != nil || status != 403 {
		t.Fatalf("foreign origin: %d", status)
	}
	expectTunnelClose(t, mustTunnel(t, tc.WSURL("/exec"), nil), 1011, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	var body string
	for {
		_, b := tc.Admin(http.MethodGet, "/metrics", nil)
		body = string(b)
		if strings.Contains(body, `caddyws_tunnel_total{result="closed_by_client",upstream="socket"}`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{
		`caddyws_tunnel_active{upstream="socket"}`,
		`caddyws_tunnel_active{upstream="exec"}`,
		`caddyws_tunnel_total{result="closed_by_client",upstream="socket"}`,
		`caddyws_tunnel_total{result="dial_failed",upstream="socket"}`,
		`caddyws_tunnel_total{result="refused_origin",upstream="socket"}`,
		`caddyws_tunnel_total{result="start_failed",upstream="exec"}`,
		`caddyws_tunnel_bytes_total{direction="up",upstream="socket"}`,
		`caddyws_tunnel_bytes_total{direction="down",upstream="socket"}`,
		"caddyws_tunnel_dial_seconds_bucket",
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}
