//go:build linux

// Command floor measures the cheapest possible delivery on this machine: one
// goroutine, locked to its OS thread, writing the same small frame to N
// loopback TCP sockets in turn, and the CPU time (user + system) of that
// thread per write. A push server cannot deliver a message for less than one
// such write, so its CPU per delivery divided by this figure says how much
// it adds on top of the kernel (bench/run-push.sh measures both in one run).
//
//	go run ./bench/floor -conns 10000 -writes 500000 -size 120
//	go run ./bench/floor -conns 10000 -writes 500000 -batch 100   # the same sends through io_uring
//
// Stdout gets the µs per write alone (for scripts); stderr a line of detail.
// The reading ends are dialled and drained by a child process (this program
// with -drain), whose CPU is not counted: the server's readers (the clients)
// are not counted in its figure either.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	conns := flag.Int("conns", 10000, "loopback connections written to in turn")
	writes := flag.Int("writes", 500000, "writes per measurement")
	size := flag.Int("size", 120, "bytes per write (a small push frame)")
	rounds := flag.Int("rounds", 3, "measurements; the median is reported")
	srcIPs := flag.Int("src-ips", 20, "loopback source addresses 127.0.0.1..N to dial from")
	timeout := flag.Duration("timeout", 2*time.Minute, "the whole run stops by itself after this")
	drainAddr := flag.String("drain", "", "(internal) dial -conns connections to this address and read them until EOF")
	batch := flag.Int("batch", 0, "with N > 1, submit the writes N at a time through io_uring (one io_uring_enter per N MSG_DONTWAIT sends) instead of one write(2) each")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *drainAddr != "" {
		if err := drain(ctx, *drainAddr, *conns, *srcIPs); err != nil {
			fmt.Fprintln(os.Stderr, "floor drain:", err)
			os.Exit(1)
		}
		return
	}
	res, err := measure(ctx, *conns, *writes, *size, *rounds, *srcIPs, *batch)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	how := "write(2) each"
	if *batch > 1 {
		how = fmt.Sprintf("io_uring, %d per submission", *batch)
	}
	fmt.Fprintf(os.Stderr, "floor: %d loopback conns, %d-byte writes (%s): %.2f µs CPU per write (median of %v), %.0f writes/s; load1 %.2f\n",
		*conns, *size, how, res.median, res.all, res.perSec, load1())
	fmt.Printf("%.3f\n", res.median)
}

type floorResult struct {
	median, perSec float64
	all            []float64 // µs per write of each measurement
}

func measure(ctx context.Context, n, writes, size, rounds, srcIPs, batch int) (*floorResult, error) {
	if err := raiseNoFile(uint64(n) + 256); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	child := exec.CommandContext(ctx, exe, "-drain", ln.Addr().String(), "-conns", strconv.Itoa(n), "-src-ips", strconv.Itoa(srcIPs))
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		return nil, fmt.Errorf("starting the draining process: %w", err)
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close() // EOF: the child exits
		}
		_ = child.Wait()
	}()
	for len(conns) < n {
		if tl, ok := ln.(*net.TCPListener); ok {
			_ = tl.SetDeadline(time.Now().Add(30 * time.Second))
		}
		c, err := ln.Accept()
		if err != nil {
			return nil, fmt.Errorf("accepting connection %d of %d: %w", len(conns)+1, n, err)
		}
		conns = append(conns, c)
	}

	frame := make([]byte, size)
	for i := range frame {
		frame[i] = 'a' + byte(i%26)
	}
	write := writeAll
	if batch > 1 {
		write = func(conns []net.Conn, frame []byte, count int) (time.Duration, time.Duration, error) {
			return writeBatched(conns, frame, count, batch)
		}
	}
	if _, _, err := write(conns, frame, n); err != nil { // warm-up: one write each
		return nil, err
	}
	res := &floorResult{}
	var wall time.Duration
	for range rounds {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cpu, w, err := write(conns, frame, writes)
		if err != nil {
			return nil, err
		}
		res.all = append(res.all, float64(cpu)/float64(time.Microsecond)/float64(writes))
		wall += w
	}
	sorted := slices.Clone(res.all)
	slices.Sort(sorted)
	res.median = sorted[len(sorted)/2]
	res.perSec = float64(writes*rounds) / wall.Seconds()
	return res, nil
}

// writeAll writes frame to the conns in turn, count times in all, on one
// locked thread, and returns that thread's CPU time and the wall time.
func writeAll(conns []net.Conn, frame []byte, count int) (cpu, wall time.Duration, err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		c0, t0 := threadCPU(), time.Now()
		for i := range count {
			if _, err = conns[i%len(conns)].Write(frame); err != nil {
				return
			}
		}
		cpu, wall = threadCPU()-c0, time.Since(t0)
	}()
	<-done
	return cpu, wall, err
}

// drain is the child: it dials n connections to addr (from several loopback
// source addresses) and reads each until EOF.
func drain(ctx context.Context, addr string, n, srcIPs int) error {
	if err := raiseNoFile(uint64(n) + 256); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range n {
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%max(1, srcIPs)))}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("dialling connection %d: %w", i, err)
		}
		wg.Go(func() {
			defer c.Close()
			buf := make([]byte, 16<<10)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		})
	}
	return nil
}

// threadCPU is the calling thread's user + system CPU time.
func threadCPU() time.Duration {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	_ = syscall.Getrusage(rusageThread, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func raiseNoFile(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= need {
		return nil
	}
	lim.Max = max(lim.Max, need) // works as root (CAP_SYS_RESOURCE); else the error says so
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE to %d: %w (ulimit -n)", need, err)
	}
	return nil
}

func load1() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	var v float64
	_, _ = fmt.Sscan(string(b), &v)
	return v
}
