// The scripted network of the client's unit tests (caddyws-push.test.mjs,
// caddyws-push-sse.test.mjs): each test plays the server, with the wire of
// docs/push-protocol.md, and runs the client's timers only when it says so.
import assert from 'node:assert/strict';

// FakeSocket records what the client sends.
export class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(s) { this.sent.push(JSON.parse(s)); }
  close(code, reason) { this.readyState = 3; this.closedWith = { code, reason }; }
  // server side
  open() { this.readyState = 1; this.onopen?.(); }
  frame(obj) { this.onmessage?.({ data: JSON.stringify(obj) }); }
  drop(code, reason = '') { this.readyState = 3; this.onclose?.({ code, reason }); }
}

export const tick = () => new Promise((r) => setImmediate(r));

// fakeTimers holds the client's timers; fire() runs the oldest, fire(ms)
// the oldest of that delay.
export function fakeTimers() {
  const pending = [];
  return {
    pending,
    setTimeout: (fn, ms) => { const t = { fn, ms }; pending.push(t); return t; },
    clearTimeout: (t) => { const i = pending.indexOf(t); if (i >= 0) pending.splice(i, 1); },
    async fire(ms) {
      const i = ms === undefined ? 0 : pending.findIndex((t) => t.ms === ms);
      assert.ok(i >= 0 && pending[i], `a timer${ms === undefined ? '' : ' of ' + ms + ' ms'} is pending (have ${pending.map((t) => t.ms)})`);
      const [t] = pending.splice(i, 1);
      t.fn();
      await tick();
      return t.ms;
    },
  };
}

// msg is a message frame of the 'news' event on stream at offset.
export function msg(stream, offset, message, extra = {}) {
  return { type: 'message', id: `${stream}-${offset}`, event: 'news', message, stream, offset, epoch: 'e1', ...extra };
}
