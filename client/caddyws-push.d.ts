// Type declarations for caddyws-push.js (the websocket_push browser client).

/** A position in a stream: what a client has seen, or what the server reports. */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

/** What a handler learns about a published message besides its payload. */
export interface MessageMeta {
  id: string;
  event?: string;
  /** Present only when the server keeps history. */
  stream?: string;
  offset?: number;
  epoch?: string;
}

export interface DisconnectInfo {
  willReconnect: boolean;
  /** Milliseconds until the next attempt, when willReconnect. */
  delay?: number;
  /** The name of the close code when it is one that stops reconnecting. */
  fatal?: string;
}

export interface ClientError {
  /** The server's error code (e.g. "forbidden"), or "token", "handler", "protocol", "url". */
  code: string;
  reason: string;
  error?: unknown;
}

export interface BackoffOptions {
  /** Default: 500 (ms). */
  base?: number;
  /** Default: 30000 (ms). */
  max?: number;
  /** Default: 2. */
  factor?: number;
}

export type Transport = 'auto' | 'websocket' | 'sse';

export interface FallbackInfo {
  from: 'websocket';
  to: 'sse';
  /** The close code of the WebSocket attempt (1006 when it could not be opened). */
  code: number;
  reason: string;
}

export interface PushClientOptions {
  /** A token, or a function returning one; called before every (re)connect. */
  token?: string | (() => string | Promise<string>);
  events?: string[];
  positions?: Record<string, StreamPosition>;
  /** The SSE position to resume from (saved from lastEventId()). */
  lastEventId?: string;
  /** Default: 'auto' (a WebSocket; SSE while no WebSocket could be opened). */
  transport?: Transport;
  /** Milliseconds a WebSocket handshake or SSE response may take; 0 for none. Default: 5000. */
  connectTimeout?: number;
  /** Default: globalThis.EventSource. In Node pass the `eventsource` package. */
  EventSource?: new (url: string, init?: any) => EventSource;
  /** The second argument of new EventSource(url, init), or a function of the token returning it. */
  eventSourceInit?: object | ((token: string | undefined) => object);
  /** SSE: send the token as the `token` query parameter. Default: true. */
  tokenInQuery?: boolean;
  backoff?: BackoffOptions;
  /** Default: Infinity. */
  maxRetries?: number;
  /** Default: globalThis.WebSocket. In Node 18/20 pass the `ws` package. */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
  /** Default: Math.random. */
  random?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (t: unknown) => void;
  /** Fires 'online' when the network is back. Default: window in browsers. */
  network?: EventTarget | null;
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'waiting' | 'closed';

export interface LifecycleHandlers {
  connected: (info: { user: string; events: string[] }) => void;
  disconnected: (code: number, reason: string, info: DisconnectInfo) => void;
  reconnecting: (attempt: number, delay: number) => void;
  recovered: (stream: string, info: StreamPosition) => void;
  notRecovered: (stream: string, info: StreamPosition) => void;
  error: (err: ClientError) => void;
  /** transport 'auto' switched to SSE because a WebSocket could not be opened. */
  fallback: (info: FallbackInfo) => void;
  message: (message: unknown, meta: MessageMeta) => void;
  '*': (message: unknown, meta: MessageMeta) => void;
}

export declare class PushClient {
  constructor(url: string, options?: PushClientOptions);
  readonly url: string;
  state: ClientState;
  /** The transport of the current (or next) connection. */
  transport: 'websocket' | 'sse';
  /** The user id the server confirmed ("" for anonymous). */
  user: string | undefined;

  on<K extends keyof LifecycleHandlers>(name: K, fn: LifecycleHandlers[K]): () => void;
  /** A published event: fn gets the message payload and its meta. */
  on<T = unknown>(event: string, fn: (message: T, meta: MessageMeta) => void): () => void;
  off(name: string, fn: (...args: any[]) => void): void;

  connect(): this;
  close(code?: number, reason?: string): void;
  reconnect(): this;
  subscribe(...events: Array<string | string[]>): this;
  unsubscribe(...events: Array<string | string[]>): this;
  events(): string[];
  positions(): Record<string, StreamPosition>;
  /** The id of the last SSE event seen ('' if none). */
  lastEventId(): string;
}

export declare function connect(url: string, options?: PushClientOptions): PushClient;
export declare function shouldReconnect(code: number): boolean;
export declare function backoffDelay(attempt: number, backoff?: BackoffOptions, random?: () => number): number;
export declare const FATAL_CLOSE_CODES: Readonly<Record<number, string>>;
export declare const LIFECYCLE_EVENTS: readonly string[];
export declare const TRANSPORTS: readonly Transport[];
export declare function sseURL(url: string, opts?: { events?: string[]; token?: string; lastEventId?: string }): string;
export declare function wsURL(url: string): string;
