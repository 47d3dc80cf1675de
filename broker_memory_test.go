package caddyws

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
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

// TestBrokerCaddyfiles checks each broker's Caddyfile syntax: every option
// lands in its JSON field, and mistakes are refused with file:line errors.
func TestBrokerCaddyfiles(t *testing.T) {
	good := []struct {
		name, in string
		mod      caddyfile.Unmarshaler
		want     string
	}{
		{"nats", `nats nats://a:4222,nats://b:4222 {
			prefix acme.push
			stream ACME
			storage memory
			replicas 3
			username u
			password {env.NATS_PASS}
			tls_ca /ca.pem
			tls_cert /c.pem
			tls_key /k.pem
			tls_server_name nats.internal
			timeout 3s
			reconnect_wait 250ms
		}`, new(NATSBroker),
			`{"url":"nats://a:4222,nats://b:4222","prefix":"acme.push","stream":"ACME","storage":"memory","replicas":3,"username":"u","password":"{env.NATS_PASS}","tls_ca":"/ca.pem","tls_cert":"/c.pem","tls_key":"/k.pem","tls_server_name":"nats.internal","timeout":3000000000,"reconnect_wait":250000000}`},
		{"nats creds", "nats {env.PUSH_BROKER} {\n creds /x.creds\n}", new(NATSBroker), `{"url":"{env.PUSH_BROKER}","creds":"/x.creds"}`},
		{"redis", `redis rediss://h:6380/2 {
			username u
			password p
			db 3
			tls
			tls_ca /ca.pem
			prefix acme:
			timeout 1s
		}`, new(RedisBroker),
			`{"url":"rediss://h:6380/2","username":"u","password":"p","db":3,"tls":true,"tls_ca":"/ca.pem","prefix":"acme:","timeout":1000000000}`},
		{"redis cluster", "redis {\n addrs a:1 b:2 c:3\n}", new(RedisBroker), `{"addrs":["a:1","b:2","c:3"]}`},
		{"redis sentinel", "redis {\n addrs s1:26379 s2:26379\n master_name mymaster\n}", new(RedisBroker), `{"addrs":["s1:26379","s2:26379"],"master_name":"mymaster"}`},
		{"redis cluster asked for", "redis redis://h:6379 {\n cluster on\n}", new(RedisBroker), `{"url":"redis://h:6379","cluster":"on"}`},
	}
	for _, tc := range good {
		if err := tc.mod.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, _ := json.Marshal(tc.mod)
		if string(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
	bad := []struct {
		in   string
		mod  caddyfile.Unmarshaler
		want string
	}{
		{"nats", new(NATSBroker), "wrong argument count"},
		{"nats u1 u2", new(NATSBroker), "wrong argument count"},
		{"nats u {\n bogus 1\n}", new(NATSBroker), `unknown nats broker option "bogus"`},
		{"nats u {\n prefix a\n prefix b\n}", new(NATSBroker), "duplicate option"},
		{"nats u {\n replicas x\n}", new(NATSBroker), "non-negative integer"},
		{"nats u {\n timeout soon\n}", new(NATSBroker), "bad duration"},
		{"redis", new(RedisBroker), "needs a url or addrs"},
		{"redis u {\n tls yes\n}", new(RedisBroker), "wrong argument count"},
		{"redis u {\n nope\n}", new(RedisBroker), `unknown redis broker option "nope"`},
		{"redis u {\n cluster maybe\n}", new(RedisBroker), `cluster "maybe": want on, off or auto`},
	}
	for _, tc := range bad {
		err := tc.mod.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: err = %v, want %q with file:line", tc.in, err, tc.want)
		}
	}
}

func TestBrokerProvisionResolvesEnvAndValidates(t *testing.T) {
	t.Setenv("CADDYWS_TEST_BROKER", "nats://127.0.0.1:4999")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	n := &NATSBroker{URL: "{env.CADDYWS_TEST_BROKER}"}
	if err := n.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if n.cfg.URL != "nats://127.0.0.1:4999" {
		t.Fatalf("url = %q, want the env value", n.cfg.URL)
	}
	for _, bad := range []caddy.Module{
		&NATSBroker{URL: "nats://x", Storage: "disk"},
		&NATSBroker{URL: "nats://x", Prefix: "a.*"},
		&NATSBroker{URL: "nats://x", Token: "t", Username: "u"},
		&NATSBroker{URL: "{env.CADDYWS_TEST_UNSET}"},
		&NATSBroker{URL: "redis://127.0.0.1:6379"},
		&RedisBroker{URL: "redis://x", Addrs: []string{"y:1"}},
		&RedisBroker{URL: "redis://x", Prefix: "{x}"},
		&RedisBroker{URL: "redis://x", TLSCert: "c"},
		&RedisBroker{URL: "http://x"},
	} {
		if err := bad.(caddy.Provisioner).Provision(ctx); err == nil {
			t.Errorf("%#v provisioned without error", bad)
		}
	}
}
