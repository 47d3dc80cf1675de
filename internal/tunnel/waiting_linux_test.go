package tunnel

import (
	"net"
	"testing"
	"time"
)

func TestBytesWaitingSeesUnreadBytesOfTheSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waiting := bytesWaiting(hookConn{Conn: s, hook: &readHook{}})
	if waiting == nil {
		t.Fatal("no check for a TCP connection behind a hookConn")
	}
	if waiting() {
		t.Fatal("bytes waiting before any was sent")
	}
	if _, err := c.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); !waiting(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("3 bytes sent, none seen waiting")
		}
	}
	buf := make([]byte, 3)
	if _, err := s.Read(buf); err != nil {
		t.Fatal(err)
	}
	if waiting() {
		t.Fatal("bytes waiting after all were read")
	}
}
