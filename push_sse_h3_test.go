package caddyws

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"testing"

	"github.com/quic-go/quic-go/http3"
)

// TestSSEOverHTTP3 subscribes with quic-go's HTTP/3 client to Caddy's
// HTTP/3 server (tls internal) and receives in order.
func TestSSEOverHTTP3(t *testing.T) {
	tc, _ := pushCaddy(t, `https://localhost:@HTTPS@ {
	tls internal
	websocket_push /sub {
		hub h3
		auth token_is_user
	}
	websocket_push /push {
		hub h3
		publish_key k
	}
}`)
	base := fmt.Sprintf("https://localhost:%d", tc.HTTPSPort)
	waitTLS(t, tlsClient(true), base)
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	t.Cleanup(func() { h3.Close() })
	c := &http.Client{Transport: h3}
	// Caddy's HTTP/3 listener may come up a little after TCP.
	waitTLS(t, c, base)
	s := openSSE(t, c, base+"/sub?token=q&event=e", nil)
	if s.resp.ProtoMajor != 3 {
		t.Fatalf("protocol %s, want HTTP/3", s.resp.Proto)
	}
	sub := sseSub{s}
	expectFrame(t, sub, "connected")
	pc := tlsClient(true)
	for i := range 20 {
		publishWith(t, pc, base+"/push", "k", fmt.Sprintf(`{"event":"e","message":%d}`, i))
	}
	for i := range 20 {
		expectMessage(t, sub, fmt.Sprint(i), "e")
	}
}
