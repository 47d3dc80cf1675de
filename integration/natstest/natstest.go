// Package natstest runs a real NATS server with JetStream, embedded, on a
// fixed loopback port, so that tests can stop it and start it again in
// place (an outage the brokers must ride out).
package natstest

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/caddyws/caddyws/broker/brokertest"
)

// Server is one embedded nats-server.
type Server struct {
	// Port is the loopback port it listens on, kept across restarts.
	Port int
	dir  string
	srv  *server.Server
}

// Start runs a server on a fresh port and store, stopped when t ends.
func Start(t *testing.T) *Server {
	t.Helper()
	s := &Server{Port: brokertest.FreePort(t), dir: t.TempDir()}
	s.Start(t)
	t.Cleanup(s.Stop)
	return s
}

// Start (re)starts the server on its port and store.
func (s *Server) Start(t *testing.T) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: s.Port, JetStream: true, StoreDir: s.dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready in 10s")
	}
	s.srv = srv
}

// Stop shuts the server down; it may be called when it is stopped.
func (s *Server) Stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// URL is the server's nats:// URL.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.Port) }
