// Type declarations for aifetch.js (ES2022 module, no dependencies).

export interface Timeouts {
  /** ms until the response headers arrive (per attempt). */
  firstByte?: number;
  /** ms of silence allowed between two body chunks while the body is being read. */
  idle?: number;
  /** ms for the whole call: every attempt, the waits between them, and the body. */
  total?: number;
}

export interface RetryOptions {
  /** Tries in all, the first included (default 3 when `retry` is given; 1 without it). */
  attempts?: number;
  /** Statuses worth another try (default 408, 429, 500, 502, 503, 504). */
  statuses?: Iterable<number>;
  /** ms; a server asking for a longer wait makes the call reject at once (default 60000). */
  maxServerWait?: number;
  /** ms; the first backoff window, doubled per retry, jittered (default 500). */
  backoff?: number;
  /** ms; the largest backoff window (default 8000). */
  cap?: number;
}

export interface AifetchInit extends RequestInit {
  /** A value sent as JSON; sets Content-Type: application/json unless given. */
  json?: unknown;
  /** Timeouts by phase, or one number for firstByte and idle. */
  timeout?: Timeouts | number;
  /** Retries for statuses and for failures before any response; a number is `attempts`. */
  retry?: RetryOptions | number;
  /** Reject non-2xx statuses with HTTPError (default true). */
  throwHttpErrors?: boolean;
}

/** fetch(), plus the rules of aifetch's Python client. */
export function aifetch(input: RequestInfo | URL, init?: AifetchInit): Promise<Response>;
export default aifetch;

export interface ServerSentEvent {
  /** The event type; "message" when the block set none. */
  event: string;
  data: string;
  /** The last event ID in force when the event was dispatched ("" when none). */
  id: string;
  /** The reconnection time (ms) this event's own block set, else undefined. */
  retry: number | undefined;
}

export interface SSEOptions {
  /** Characters one event may hold (its data and the line being read); default 16 MiB. */
  maxEventSize?: number;
  /** Called with each comment line, the colon and one space removed. */
  onComment?: ((text: string) => void) | null;
}

/** Sans-IO event stream decoder (WHATWG HTML §9.2.5-9.2.6). */
export class SSEDecoder {
  constructor(options?: SSEOptions);
  readonly lastEventId: string;
  readonly retry: number | undefined;
  feed(bytes: BufferSource): ServerSentEvent[];
  close(): [];
}

export function readEvents(response: Response, options?: SSEOptions): AsyncGenerator<ServerSentEvent, void, undefined>;

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: {
      role?: string;
      content?: string | null;
      refusal?: string | null;
      reasoning_content?: string | null;
      tool_calls?: Array<{ index?: number; id?: string; type?: string; function?: { name?: string; arguments?: string } }>;
      function_call?: { name?: string; arguments?: string };
    };
    logprobs?: unknown;
    finish_reason: string | null;
  }>;
  usage?: Usage | null;
  system_fingerprint?: string | null;
  service_tier?: string | null;
  [extra: string]: unknown;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  [extra: string]: unknown;
}

export interface ToolCall {
  id: string;
  type: string;
  function: { name: string; arguments: string };
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: {
      role: string;
      content: string | null;
      refusal: string | null;
      reasoning_content?: string;
      tool_calls?: ToolCall[];
      function_call?: { name: string; arguments: string };
    };
    logprobs: { content: unknown[] | null; refusal: unknown[] | null } | null;
    finish_reason: string | null;
  }>;
  usage: Usage | null;
  service_tier: string | null;
  system_fingerprint: string | null;
}

export class ChatAccumulator {
  add(chunk: ChatCompletionChunk): void;
  final(): ChatCompletion;
}

export class ChatStream implements AsyncIterable<ChatCompletionChunk> {
  readonly accumulator: ChatAccumulator;
  /** Chunks read so far. */
  readonly count: number;
  /** Whether data: [DONE] arrived. */
  readonly done: boolean;
  [Symbol.asyncIterator](): AsyncGenerator<ChatCompletionChunk, void, undefined>;
  /** The content text of choice 0, piece by piece. */
  textDeltas(): AsyncGenerator<string, void, undefined>;
  /** Reads what is left; the accumulated completion, or the stream's error. */
  final(): Promise<ChatCompletion>;
}

export function readChat(response: Response, options?: SSEOptions): ChatStream;

export interface ProviderError {
  message: string | null;
  type: string | null;
  code: string | null;
  param: string | null;
}

/** The provider error in a decoded JSON error body (OpenAI, Anthropic, Google, Azure, FastAPI). */
export function providerError(body: unknown): ProviderError | null;
/** [parsed body, provider error] for an error body's text. */
export function parseErrorBody(text: string): [unknown, ProviderError | null];
/** Seconds the server asked to wait (retry-after-ms, Retry-After, x-ratelimit-reset-*, RateLimit-Reset). */
export function serverWait(headers: Headers, now?: number): number | null;

export class AifetchError extends Error {}

export class HTTPError extends AifetchError {
  readonly status: number;
  readonly statusText: string;
  readonly response: Response | null;
  /** The error body, parsed as JSON when it is JSON, else its text (first 1 MiB). */
  readonly body: unknown;
  /** The provider's own message (`message` is the whole line: "429 Too Many Requests: POST … — …"). */
  readonly providerMessage: string | null;
  readonly type: string | null;
  readonly code: string | null;
  readonly param: string | null;
  readonly requestId: string | null;
  /** Seconds the server asked to wait, when it said. */
  readonly retryAfter: number | null;
}

export class NetworkError extends AifetchError {
  /** "send": before a response arrived; "body": while reading it. */
  readonly phase: "send" | "body";
}

export class TimeoutError extends AifetchError {
  readonly phase: "firstByte" | "idle" | "total";
}

export class AbortError extends AifetchError {
  /** What the signal's abort() was given. */
  readonly reason: unknown;
}

export class StreamError extends AifetchError {
  readonly body: unknown;
  readonly providerMessage: string | null;
  readonly type: string | null;
  readonly code: string | null;
  readonly param: string | null;
}

export class ContentTypeError extends AifetchError {}
export class EventTooLargeError extends AifetchError {}
export class IncompleteStreamError extends AifetchError {}
export class InvalidChunkError extends AifetchError {}
