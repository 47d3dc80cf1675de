package redis

import (
	"strings"
	"testing"
)

func TestConfigRejectsContradictoryClusterSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown mode", Config{URL: "redis://h:6379", Cluster: "yes"}, `cluster "yes"`},
		{"sentinel and cluster on", Config{Addrs: []string{"h:26379"}, MasterName: "m", Cluster: ClusterOn}, "exclude each other"},
		{"cluster off with several addrs", Config{Addrs: []string{"a:1", "b:2"}, Cluster: ClusterOff}, "takes one address"},
		{"cluster on with a db", Config{URL: "redis://h:6379", DB: 2, Cluster: ClusterOn}, "only db 0"},
		{"auto with one url", Config{URL: "redis://h:6379"}, ""},
		{"on with addrs", Config{Addrs: []string{"a:1"}, Cluster: ClusterOn}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
