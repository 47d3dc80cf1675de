//go:build linux

package main

import (
	"bufio"
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
// they are proposed: -pool-reader and -dial-early are such prototypes.

type relayServer struct {
	upstream   string
	bufSize    int
	poolReader bool
	dialEarly  bool
	upgrader   websocket.Upgrader
	readers    sync.Pool // *bufio.Reader of bufSize, with -pool-reader
}

func runRelay(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve WebSocket tunnels on (loopback)")
	rs := &relayServer{}
	fs.StringVar(&rs.upstream, "upstream", "", "TCP address every tunnel goes to")
	fs.IntVar(&rs.bufSize, "buffer", tunnel.DefaultBufferSize, "buffer_size, as in websocket_tunnel")
	fs.BoolVar(&rs.poolReader, "pool-reader", false, "prototype: reuse the per-connection client reader from a pool instead of allocating it per tunnel")
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
	rs.readers.New = func() any { return bufio.NewReaderSize(nil, rs.bufSize) }
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
	var ws *websocket.Conn
	var br *bufio.Reader
	var err error
	if rs.poolReader {
		h := &pooledHijacker{ResponseWriter: w, pool: &rs.readers}
		ws, err = rs.upgrader.Upgrade(h, r, nil)
		br = h.reader
		if br != nil {
			defer func() { br.Reset(nil); rs.readers.Put(br) }()
		}
	} else {
		h := &tunnel.Hijacker{ResponseWriter: w, Inner: w.(http.Hijacker), BufferSize: rs.bufSize}
		ws, err = rs.upgrader.Upgrade(h, r, nil)
		br = h.Reader
	}
	if err != nil {
		if early != nil {
			if d := <-early; d.c != nil {
				d.c.Close()
			}
		}
		return
	}
	s := tunnel.NewSession(ws, br, tunnel.Options{BufferSize: rs.bufSize})
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

// pooledHijacker is tunnel.Hijacker with the client reader taken from a
// pool (the prototype behind -pool-reader). A client never pipelines bytes
// behind its handshake before the 101, so the server's buffer is empty
// here; if it is not, the pooled reader is skipped.
type pooledHijacker struct {
	http.ResponseWriter
	pool   *sync.Pool
	reader *bufio.Reader
}

func (h *pooledHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := h.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Reader.Buffered() > 0 {
		h.reader = nil
		return conn, brw, fmt.Errorf("prototype: client pipelined %d bytes behind its handshake", brw.Reader.Buffered())
	}
	h.reader = h.pool.Get().(*bufio.Reader)
	h.reader.Reset(conn)
	return conn, bufio.NewReadWriter(h.reader, brw.Writer), nil
}
