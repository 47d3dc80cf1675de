package inproc

import (
	"io"
	"net/http"
	"testing"
)

// Right after Reload returns, every new connection is served by the new
// config: Caddy binds a new SO_REUSEPORT socket per config and stops the
// old servers after /load has answered, so without the wait in Reload a
// connection could still land on the old config's closing socket (and see
// the old site, or EOF before any response).
func TestReloadReturnsOnceOnlyTheNewConfigAccepts(t *testing.T) {
	tc := Start(t, `http://localhost:@HTTP@ {
	respond "0"
}`)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for gen := 1; gen <= 8; gen++ {
		want := string(rune('0' + gen))
		tc.Reload(`http://localhost:@HTTP@ {
	respond "` + want + `"
}`)
		for i := range 30 {
			resp, err := client.Get(tc.URL("/"))
			if err != nil {
				t.Fatalf("reload %d, request %d: %v", gen, i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != want {
				t.Fatalf("reload %d, request %d: served %q by an old config, want %q", gen, i, b, want)
			}
		}
	}
}
