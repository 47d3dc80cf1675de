// Command caddy is Caddy with its standard modules and caddyws, so the module
// can be tried without xcaddy: go run ./cmd/caddy run --config Caddyfile.example
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddyws/caddyws"
)

func main() {
	caddycmd.Main()
}
