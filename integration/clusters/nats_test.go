package clusters

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsCluster starts 3 embedded NATS servers with clustered JetStream.
func natsCluster(t *testing.T) ([]*server.Server, []string) {
	t.Helper()
	var ports, routes []int
	for i := 0; i < 3; i++ {
		ports = append(ports, freePort(t))
		routes = append(routes, freePort(t))
	}
	var srvs []*server.Server
	var urls []string
	for i := 0; i < 3; i++ {
		var rs []*url.URL
		for j, rp := range routes {
			if j != i {
				rs = append(rs, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", rp)})
			}
		}
		opts := &server.Options{
			ServerName: fmt.Sprint("n", i), Host: "127.0.0.1", Port: ports[i],
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "c", Host: "127.0.0.1", Port: routes[i]},
			Routes:  rs,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		srvs = append(srvs, s)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	for _, s := range srvs {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats server not ready in 10s")
		}
	}
	// JetStream needs a meta leader before streams can be made.
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := 0
		for _, s := range srvs {
			if s.JetStreamIsLeader() {
				n++
			}
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no jetstream meta leader in 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return srvs, urls
}

// TestNATSClusterDefaultReplicasSurviveLeaderLoss: with 3 servers and no
// replicas line the history stream gets 3 replicas; killing the server
// leading it loses no publish and no message.
func TestNATSClusterDefaultReplicasSurviveLeaderLoss(t *testing.T) {
	srvs, urls := natsCluster(t)
	block := "broker nats " + strings.Join(urls, ",")
	subNode := startNode(t, "subscribers", block)
	pubNode := startNode(t, "publishers", block)
	var subs []*subscriber
	for i := 0; i < 20; i++ {
		subs = append(subs, subscribe(t, subNode, fmt.Sprint("n", i)))
	}
	ready(t, pubNode, subs)

	nc, err := gonats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "CADDYWS_PUSH")
	if err != nil {
		t.Fatal(err)
	}
	info := st.CachedInfo()
	if info.Config.Replicas != 3 {
		t.Fatalf("history stream has %d replicas with no replicas line on 3 servers, want 3", info.Config.Replicas)
	}
	leader := info.Cluster.Leader
	killed := time.Now()
	for _, s := range srvs {
		if s.Name() == leader {
			s.Shutdown()
		}
	}
	// Every publish must succeed; one retry is allowed for the election.
	retried := 0
	for _, s := range subs {
		code, body := publish(pubNode, s.user, "after-"+s.user)
		if code != http.StatusOK {
			retried++
			time.Sleep(500 * time.Millisecond)
			if code, body = publish(pubNode, s.user, "after-"+s.user); code != http.StatusOK {
				t.Fatalf("publish to %s after the stream leader %s was killed: %d %s", s.user, leader, code, body)
			}
		}
		_ = body
	}
	t.Logf("stream leader %s killed; %d of %d publishes needed a retry; all accepted %v after the kill",
		leader, retried, len(subs), time.Since(killed).Round(10*time.Millisecond))
	waitAll(t, subs, 10*time.Second, func(s *subscriber) string { return "after-" + s.user })
}

// TestNATSReplicasThatCannotBePlacedFailTheStart: replicas 3 on a single
// server is a config error at start, not a silent single copy.
func TestNATSReplicasThatCannotBePlacedFailTheStart(t *testing.T) {
	port := freePort(t)
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready in 10s")
	}
	_, err = runNode(t, "replicas3", fmt.Sprintf("broker nats nats://127.0.0.1:%d {\n\t\t\treplicas 3\n\t\t}", port))
	if err == nil || !strings.Contains(err.Error(), "with replicas 3") {
		t.Fatalf("replicas 3 on one server: want a failed start naming the replicas, got %v", err)
	}
}
