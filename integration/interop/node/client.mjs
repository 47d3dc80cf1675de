// A WebSocket client none of us wrote (npm's `ws`), driven by
// interop/node_test.go. It takes one JSON argument and prints one JSON line:
//
//   {"url": "ws://...", "protocols": ["binary"], "mode": "echo"|"recv"|"handshake",
//    "send": "<file>", "sizes": [1, 4096, ...], "out": "<file>", "timeoutMs": 20000}
//
// echo:      sends the bytes of `send` as binary messages whose sizes cycle
//            through `sizes`, writes everything received to `out`, and closes
//            with 1000 once as many bytes came back as were sent.
// recv:      sends nothing, writes what it receives to `out` until the server
//            closes.
// handshake: reports the handshake's outcome and closes.
//
// The printed line has: status (HTTP status of a refused handshake),
// protocol (the negotiated subprotocol), code and reason (the close frame the
// client received), received (byte count), error.
import { readFileSync, writeFileSync } from 'node:fs';
import WebSocket from 'ws';

const cfg = JSON.parse(process.argv[2]);
const result = { status: 0, protocol: null, code: 0, reason: '', received: 0, error: '' };
let finished = false;
const finish = (exitCode) => {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(exitCode));
};
// Not unref'd: the timer also keeps the process alive until finish() ran.
setTimeout(() => { result.error = 'timeout'; finish(1); }, cfg.timeoutMs || 20000);

const ws = new WebSocket(cfg.url, cfg.protocols || [], { perMessageDeflate: false });
ws.binaryType = 'nodebuffer';
const chunks = [];
let received = 0;
const data = cfg.mode === 'echo' ? readFileSync(cfg.send) : Buffer.alloc(0);

ws.on('unexpected-response', (req, res) => {
  result.status = res.statusCode;
  finish(0);
});

ws.on('open', () => {
  result.protocol = ws.protocol;
  if (cfg.mode === 'handshake') {
    ws.close(1000);
    return;
  }
  if (cfg.mode === 'echo') {
    const sizes = cfg.sizes && cfg.sizes.length ? cfg.sizes : [4096];
    let off = 0;
    for (let i = 0; off < data.length; i++) {
      const n = Math.min(sizes[i % sizes.length], data.length - off);
      ws.send(data.subarray(off, off + n), { binary: true });
      off += n;
    }
    if (data.length === 0) ws.close(1000);
  }
});

ws.on('message', (msg, isBinary) => {
  if (!isBinary) {
    result.error = 'received a text message';
    ws.terminate();
    return;
  }
  chunks.push(msg);
  received += msg.length;
  if (cfg.mode === 'echo' && received >= data.length) {
    ws.close(1000);
  }
});

ws.on('close', (code, reason) => {
  result.code = code;
  result.reason = reason.toString();
  result.received = received;
  if (cfg.out) writeFileSync(cfg.out, Buffer.concat(chunks));
  finish(0);
});

ws.on('error', (err) => {
  if (result.status) return; // reported by unexpected-response
  result.error = String(err && err.message ? err.message : err);
});
