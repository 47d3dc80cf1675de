package caddyws

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestMemoryBrokerCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser("memory")
	var m MemoryBroker
	if err := m.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if err := new(MemoryBroker).UnmarshalCaddyfile(caddyfile.NewTestDispenser("memory extra")); err == nil {
		t.Fatal("want error")
	}
	if err := new(MemoryBroker).UnmarshalCaddyfile(caddyfile.NewTestDispenser("memory {\n x\n}")); err == nil {
		t.Fatal("want error")
	}
}
