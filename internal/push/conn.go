package push

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// item is one queued frame. data is shared between connections and never
// modified. stream/offset identify a message for recovery deduplication;
// at is the publish time for the latency histogram (zero for control
// frames).
type item struct {
	data   []byte
	stream string
	offset uint64
	at     int64
	// epoch completes stream/offset for the transports that tell the
	// client its position with every frame (SSE ids); an item with a
	// stream moves that position, including a recovered:false frame.
	epoch string
	close bool // the close frame: last thing written
	pong  bool // a pong: at most one waits, carrying the latest payload
	ping  bool // a keepalive ping: at most one waits
}

// Conn is one subscriber. Its reader is the goroutine running serve. Its
// writer is whoever queued a frame into an empty queue: a publish writes
// it itself when the transport can write without waiting (writeNow),
// otherwise, and for whatever the socket does not take at once, a
// goroutine is started that ends when the queue is empty. An idle
// connection costs one goroutine, not two.
type Conn struct {
	hub *Hub
	// tr writes the frames (WebSocket frames or SSE events); ws and nc are
	// the WebSocket reader's (nil for SSE).
	tr   transport
	ws   *websocket.Conn
	nc   net.Conn
	id   uint64
	user string
	// allowed lists the events the identity may subscribe to (nil: any).
	allowed map[string]struct{}
	expires time.Time
	// quiet lists the streams recovered without a recovered frame (set
	// before connect, read by recover on the same goroutine).
	quiet map[string]struct{}

	// events is guarded by hub.mu.
	events map[string]struct{}
	// registered is guarded by hub.mu: the connection is in the index.
	registered bool

	// inline: the transport can write without blocking (tryWrite), so a
	// publish writes to an idle connection itself (writeNow).
	inline bool

	mu    sync.Mutex
	queue []item
	// queued is the bytes of queue plus pending: with len(queue) +
	// len(pending) it is the connection's one outbound budget, which every
	// frame the server queues (messages, replays, acks, errors, pings,
	// pongs) counts against.
	queued     int
	spare      []item
	writing    bool
	closing    bool // a close frame is queued or written: no more frames
	closeSent  bool
	readerDone bool
	closeCode  int
	// recovering buffers live frames in pending while history is replayed;
	// pendingBytes is their part of queued.
	recovering   bool
	pending      []item
	pendingBytes int
	// room, when set, is closed when the queue shrinks or the connection
	// starts closing: a replay waiting for room (waitRoom) goes on.
	room chan struct{}
}

// enqueue queues a frame for the writer. It never blocks. It returns false
// when the frame was not queued: the connection is closing, or its queue
// overflowed, in which case overflow is true and the caller closes it as a
// slow consumer (outside the hub lock). With now true the caller is the
// connection's writer and must call writeNow once it holds no lock.
func (c *Conn) enqueue(it item) (ok, overflow, now bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false, false, false
	}
	if !c.fitsLocked(it) {
		return false, true, false
	}
	if c.recovering && it.at != 0 {
		c.pending = append(c.pending, it)
		c.queued += len(it.data)
		c.pendingBytes += len(it.data)
		return true, false, false
	}
	if !c.pushMayInlineLocked(it) {
		return true, false, false
	}
	if !c.inline {
		go c.writeLoop()
		return true, false, false
	}
	return true, false, true
}

// fitsLocked reports whether it fits the outbound budget: QueueSize frames
// and QueueBytes bytes over queue and pending together.
func (c *Conn) fitsLocked(it item) bool {
	o := &c.hub.opts
	return len(c.queue)+len(c.pending) < o.QueueSize && c.queued+len(it.data) <= o.QueueBytes
}

// pushLocked appends to the queue and starts the writer goroutine if the
// connection has no writer.
func (c *Conn) pushLocked(it item) {
	if c.pushMayInlineLocked(it) {
		go c.writeLoop()
	}
}

// pushMayInlineLocked appends to the queue; when the connection had no
// writer it returns true and the caller becomes the writer: it calls
// writeNow once it holds no lock (or starts writeLoop).
func (c *Conn) pushMayInlineLocked(it item) bool {
	c.queue = append(c.queue, it)
	c.queued += len(it.data)
	if c.writing {
		return false
	}
	c.writing = true
	return true
}

// send queues a control, acknowledgement, error or replayed frame. It
// bypasses the recovery buffer (these go out before held-back live frames)
// but not the budget: a client that makes the server queue more than the
// budget without reading is closed with 4029 like any slow consumer.
// typ is the frame's type ("connected", "recovered", ...), payload its
// JSON.
func (c *Conn) send(typ string, payload []byte) { c.sendItem(item{data: c.tr.control(typ, payload)}) }

// sendAt is send for a frame that moves the client's position on stream
// (a recovered:false frame).
func (c *Conn) sendAt(typ string, payload []byte, stream string, pos Position) {
	c.sendItem(item{data: c.tr.control(typ, payload), stream: stream, offset: pos.Offset, epoch: pos.Epoch})
}

// sendPong queues a pong; while one waits unsent, it only takes the latest
// payload, so a ping flood costs one frame.
func (c *Conn) sendPong(data []byte) { c.sendItem(item{data: data, pong: true}) }

// sendPing queues a keepalive ping unless one already waits.
func (c *Conn) sendPing() { c.sendItem(item{data: c.tr.ping(), ping: true}) }

func (c *Conn) sendItem(it item) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if it.pong || it.ping {
		for i := len(c.queue) - 1; i >= 0; i-- {
			q := &c.queue[i]
			if it.ping && q.ping {
				c.mu.Unlock()
				return
			}
			if it.pong && q.pong {
				c.queued += len(it.data) - len(q.data)
				q.data = it.data
				c.mu.Unlock()
				return
			}
		}
	}
	// A frame into an empty queue always goes: the hello frame is queued
	// under the hub lock (dropSlow there would deadlock), and one frame is
	// what any connection may owe.
	if len(c.queue)+len(c.pending) > 0 && !c.fitsLocked(it) {
		c.mu.Unlock()
		c.hub.dropSlow(c)
		return
	}
	c.pushLocked(it)
	c.mu.Unlock()
}

// isClosing reports whether the connection is closing (e.g. dropped as a
// slow consumer), so that a long replay stops early.
func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// closeWith queues a close frame after what is queued (drain=true) or in
// place of it, and marks the connection closing. The writer writes it and
// then ends the TCP connection once the reader has seen the peer's answer
// or the close grace passed.
func (c *Conn) closeWith(code int, reason string, drain bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.closing = true
	c.closeCode = code
	c.wakeLocked()
	c.queued -= c.pendingBytes
	c.pending, c.pendingBytes = nil, 0
	if !drain {
		// The writer may be in the middle of a batch; what it has not
		// taken yet is dropped.
		clear(c.queue)
		c.queue = c.queue[:0]
		c.queued = 0
	}
	c.pushLocked(item{data: c.tr.closeFrame(code, reason), close: true})
}

// Close closes the connection with code and reason (e.g. an operator drop).
func (c *Conn) Close(code int, reason string) { c.closeWith(code, reason, false) }

// User returns the connection's user id ("" for anonymous).
func (c *Conn) User() string { return c.user }

// writeLoop is the writer goroutine: it writes batches, blocking with the
// write deadline armed, until the queue is empty or the connection ended.
func (c *Conn) writeLoop() {
	for {
		batch, n, last, ok := c.take()
		if !ok {
			return
		}
		if !c.written(batch, n, last, c.tr.write(batch[:n])) {
			return
		}
	}
}

// writeNow is the writer for one batch of each of conns, on the goroutine
// that queued them (a publish): one write per connection that does not
// wait for the socket, which is what almost every delivery needs, and
// costs no goroutine wake-up and no deadline; where the system allows it,
// the writes to all of them go to the kernel together (tryWriteAll).
// Whatever a socket does not take at once, and whatever was queued
// meanwhile, goes to that connection's writer goroutine: a publish never
// waits for a slow reader.
func (h *Hub) writeNow(conns []*Conn) {
	for len(conns) > 0 {
		k := min(len(conns), maxNowBatch)
		h.writeNowBatch(conns[:k])
		conns = conns[k:]
	}
}

// maxNowBatch bounds the connections of one tryWriteAll.
const maxNowBatch = 128

// nowWrite is one connection's part of writeNowBatch.
type nowWrite struct {
	c     *Conn
	batch []item
	n     int
}

type nowBatch struct {
	conns [maxNowBatch]nowWrite
	ws    [maxNowBatch]nbWrite
}

var nowBatches = sync.Pool{New: func() any { return new(nowBatch) }}

func (h *Hub) writeNowBatch(conns []*Conn) {
	b := nowBatches.Get().(*nowBatch)
	k := 0
	for _, c := range conns {
		batch, n, last, ok := c.take()
		switch {
		case !ok:
		case last:
			// Ending a connection may wait (a lingering close): not here.
			go func() {
				if c.written(batch, n, last, c.tr.write(batch[:n])) {
					c.writeLoop()
				}
			}()
		case !c.tr.prepareTry(batch[:n], &b.ws[k]):
			go c.writeRestLoop(batch, n, 0)
		default:
			b.conns[k] = nowWrite{c: c, batch: batch, n: n}
			k++
		}
	}
	tryWriteAll(b.ws[:k])
	// One clock reading and one count for the batch: its writes were made
	// together.
	now, written := time.Now().UnixNano(), 0
	for i := range b.conns[:k] {
		w := &b.conns[i]
		done, err := w.c.tr.finishTry(&b.ws[i])
		written += w.c.afterTry(w.batch, w.n, done, err, now)
	}
	if written > 0 {
		h.metrics.Written.Add(float64(written))
	}
	clear(b.conns[:k])
	clear(b.ws[:k])
	nowBatches.Put(b)
}

// afterTry goes on from a non-waiting write of batch[:n] that wrote done
// bytes at now; it returns the messages written (for the caller to
// count).
func (c *Conn) afterTry(batch []item, n, done int, err error, now int64) int {
	if errors.Is(err, errWouldBlock) {
		go c.writeRestLoop(batch, n, done)
		return 0
	}
	more, delivered := c.writtenAt(batch, n, false, err, now)
	if !more {
		return delivered
	}
	c.mu.Lock()
	if len(c.queue) == 0 {
		c.writing = false
		c.mu.Unlock()
		return delivered
	}
	c.mu.Unlock()
	go c.writeLoop()
	return delivered
}

// writeRestLoop writes batch[:n] but its first skip bytes, waiting for the
// socket, then goes on as the connection's writer goroutine.
func (c *Conn) writeRestLoop(batch []item, n, skip int) {
	if c.written(batch, n, false, c.tr.writeRest(batch[:n], skip)) {
		c.writeLoop()
	}
}

// take takes the next batch from the queue: n frames of it are written
// (up to a close frame, last), or ok is false and the writer ends.
func (c *Conn) take() (batch []item, n int, last, ok bool) {
	c.mu.Lock()
	batch = c.queue
	if len(batch) == 0 {
		c.writing = false
		c.mu.Unlock()
		return nil, 0, false, false
	}
	if cut := batchCut(batch); cut < len(batch) {
		// The rest waits for the next round: each write gets its own
		// deadline, so a slow but live reader is not taken for dead.
		rest := append(c.spare[:0], batch[cut:]...)
		clear(batch[cut:])
		batch = batch[:cut:cut]
		c.queue = rest
	} else {
		c.queue = c.spare[:0]
	}
	c.spare = nil
	for i := range batch {
		c.queued -= len(batch[i].data)
	}
	c.wakeLocked()
	c.mu.Unlock()

	n = len(batch)
	for i := range batch {
		if batch[i].close {
			n, last = i+1, true
			break
		}
	}
	return batch, n, last, true
}

// written records the outcome of writing batch[:n]; it returns false when
// the connection ended (err, or the close frame was written) and the
// writer must stop.
func (c *Conn) written(batch []item, n int, last bool, err error) bool {
	more, delivered := c.writtenAt(batch, n, last, err, time.Now().UnixNano())
	if delivered > 0 {
		c.hub.metrics.Written.Add(float64(delivered))
	}
	return more
}

// writtenAt is written for a write that ended at now; it returns the
// messages written, for the caller to count.
func (c *Conn) writtenAt(batch []item, n int, last bool, err error, now int64) (more bool, delivered int) {
	h := c.hub
	if err == nil {
		for i := range batch[:n] {
			if batch[i].at != 0 {
				delivered++
				h.metrics.Latency.Observe(float64(now-batch[i].at) / 1e9)
			}
		}
	}
	clear(batch)
	c.mu.Lock()
	if cap(batch) <= 64 {
		c.spare = batch[:0]
	}
	if err != nil || last {
		c.closeSent = true
		c.closing = true
		c.wakeLocked()
		c.writing = false
		clear(c.queue)
		c.queue = nil
		c.queued = 0
		c.pending, c.pendingBytes = nil, 0
		readerDone := c.readerDone
		c.mu.Unlock()
		c.tr.end(err, readerDone)
		return false, delivered
	}
	c.mu.Unlock()
	return true, delivered
}

// errWouldBlock is a non-waiting write that the socket did not take whole.
var errWouldBlock = errors.New("write would block")

// skipWritten returns batch without its first skip bytes (written by a
// non-waiting write); it copies only when a frame is cut.
func skipWritten(batch []item, skip int) []item {
	for skip > 0 && len(batch) > 0 && skip >= len(batch[0].data) {
		skip -= len(batch[0].data)
		batch = batch[1:]
	}
	if skip == 0 {
		return batch
	}
	rest := make([]item, len(batch))
	copy(rest, batch)
	rest[0].data = rest[0].data[skip:]
	return rest
}

// Bounds of one write: WriteTimeout then means "no progress for that
// long", not "this much data in that long".
const (
	maxBatchFrames = 256
	maxBatchBytes  = 256 << 10
)

// batchCut returns how many leading frames go into one write.
func batchCut(q []item) int {
	size := 0
	for i := range q {
		size += len(q[i].data)
		if i > 0 && (i >= maxBatchFrames || size > maxBatchBytes) {
			return i
		}
	}
	return len(q)
}

// writeBatch writes frames with one syscall where the connection allows:
// writev on TCP, one concatenated write otherwise (e.g. TLS, one record).
// The deadline is armed once for the batch.
func writeBatch(nc net.Conn, timeout time.Duration, batch []item) error {
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	if len(batch) == 1 {
		_, err := nc.Write(batch[0].data)
		return err
	}
	if _, ok := nc.(*net.TCPConn); ok {
		bufs := make(net.Buffers, len(batch))
		for i := range batch {
			bufs[i] = batch[i].data
		}
		_, err := bufs.WriteTo(nc)
		return err
	}
	size := 0
	for i := range batch {
		size += len(batch[i].data)
	}
	bp := getBuf(size)
	b := (*bp)[:0]
	for i := range batch {
		b = append(b, batch[i].data...)
	}
	_, err := nc.Write(b)
	*bp = b
	putBuf(bp)
	return err
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func getBuf(n int) *[]byte {
	bp := bufPool.Get().(*[]byte)
	if cap(*bp) < n {
		b := make([]byte, 0, n)
		return &b
	}
	return bp
}

// joinBufs returns bufs joined in a pooled buffer (give it back with
// putBuf).
func joinBufs(bufs [][]byte) *[]byte {
	size := 0
	for _, b := range bufs {
		size += len(b)
	}
	bp := getBuf(size)
	out := (*bp)[:0]
	for _, b := range bufs {
		out = append(out, b...)
	}
	*bp = out
	return bp
}

func putBuf(bp *[]byte) {
	if cap(*bp) <= 1<<20 {
		bufPool.Put(bp)
	}
}

// lingerClose ends a connection whose close frame is written and whose
// reader is gone: closing a socket with unread client bytes makes the
// kernel send a reset, and a reset can destroy the close frame before the
// client reads it. So the write side is shut first, and what the client
// still sends is discarded until it closes too or grace passes.
func lingerClose(nc net.Conn, grace time.Duration) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = nc.SetReadDeadline(time.Now().Add(grace))
	_, _ = io.Copy(io.Discard, nc)
	_ = nc.Close()
}
