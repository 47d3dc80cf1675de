//go:build linux

package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/caddyws/caddyws/internal/tunnel"
	"github.com/gorilla/websocket"
)

// The relay mode serves our tunnel engine (package tunnel) from a bare
// net/http server, without Caddy. Run beside the Caddy build in one
// comparison, it separates what the relay costs from what Caddy's request
// path costs, and it is where changes to the relay are tried out before
// they are proposed: -dial-early is such a prototype. It starts tunnels
// with tunnel.Accept, the entry point websocket_tunnel uses, so what it
// measures is the relay production runs.

type relayServer struct {
	upstream  string
	bufSize   int
	dialEarly bool
	upgrader  websocket.Upgrader
}

func runRelay(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve WebSocket tunnels on (loopback)")
	rs := &relayServer{}
	fs.StringVar(&rs.upstream, "upstream", "", "TCP address every tunnel goes to")
	fs.IntVar(&rs.bufSize, "buffer", tunnel.DefaultBufferSize, "buffer_size, as in websocket_tunnel")
	fs.BoolVar(&rs.dialEarly, "dial-early", false, "prototype: dial the upstream while the handshake is answered, not after")
	_ = fs.Parse(args)
	if rs.upstream == "" {
		return fmt.Errorf("-upstream is required")
	}
	rs.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		WriteBufferSize:  4096,
		WriteBufferPool:  &sync.Pool{},
		Subprotocols:     []string{"binary"},
		CheckOrigin:      func(*http.Request) bool { return true },
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, ln.Addr().String())
	return http.Serve(ln, rs)
}

type dialResult struct {
	c   net.Conn
	err error
}

func (rs *relayServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var early chan dialResult
	if rs.dialEarly {
		early = make(chan dialResult, 1)
		go func() {
			c, err := net.DialTimeout("tcp", rs.upstream, 10*time.Second)
			early <- dialResult{c, err}
		}()
	}
	s, err := tunnel.Accept(w, r, &rs.upgrader, tunnel.Options{BufferSize: rs.bufSize})
	if err != nil {
		if early != nil {
			if d := <-early; d.c != nil {
				d.c.Close()
			}
		}
		return
	}
	var d dialResult
	if early != nil {
		d = <-early
	} else {
		d.c, d.err = net.DialTimeout("tcp", rs.upstream, 10*time.Second)
	}
	if d.err != nil {
		s.Fail(tunnel.CloseUnreachable, "upstream unreachable")
		return
	}
	s.Run(d.c)
}
