// aifetch.js: fetch for AI model APIs, in the browser and in Node 20+.
//
// The browser half of aifetch, with the Python client's rules (one mental model for both):
//   aifetch(input, init)  fetch(), but a non-2xx status rejects with HTTPError carrying the
//                         provider's error; json, timeouts by phase, retries that honour the
//                         server's wait, and an AbortSignal that stops everything.
//   readEvents(response)  Server-Sent Events, parsed as WHATWG HTML §9.2.5-9.2.6 says.
//   readChat(response)    OpenAI chat.completion.chunk objects and the accumulated answer.
// ES2022, no dependencies, no build step.
//
// Errors, drawn once:
//   AifetchError
//   ├── HTTPError              a response arrived and its status is not 2xx
//   ├── NetworkError           the request or the body read failed (.phase: send | body)
//   ├── TimeoutError           .phase: firstByte | idle | total
//   ├── AbortError             the caller's signal fired (.reason)
//   ├── ContentTypeError       a stream was asked of a response that is not text/event-stream
//   ├── EventTooLargeError     one event outgrew maxEventSize
//   ├── StreamError            an {"error": ...} payload or an `error` event inside a stream
//   ├── IncompleteStreamError  the stream ended before data: [DONE]
//   └── InvalidChunkError      a stream event is not a chat.completion.chunk
// No message, error field or log line ever holds a key, an Authorization value or a ?key=.

// ---------------------------------------------------------------------------- errors

export class AifetchError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

// The provider's own description of an error, shared by HTTPError and StreamError. JS keeps
// `message` for the whole line, so the provider's message is `providerMessage`.
function setProvider(err, provider, body) {
  err.body = body;
  err.providerMessage = provider?.message ?? null;
  err.type = provider?.type ?? null;
  err.code = provider?.code ?? null;
  err.param = provider?.param ?? null;
}

function describe(provider) {
  if (!provider) return "";
  const extras = [];
  if (provider.type) extras.push(`type=${provider.type}`);
  if (provider.code) extras.push(`code=${provider.code}`);
  if (provider.param) extras.push(`param=${provider.param}`);
  const text = provider.message ?? "";
  if (!extras.length) return text;
  return text ? `${text} (${extras.join(", ")})` : extras.join(", ");
}

export class HTTPError extends AifetchError {
  // Reads like "429 Too Many Requests: POST https://host/v1/chat/completions — Rate limit
  // reached (type=requests, code=rate_limit_exceeded)", as the Python HTTPError does.
  constructor({ status, statusText, method, url, response, body, provider, requestId, retryAfter, note }) {
    // A Response made in the page has no URL, and one aifetch() did not send no method.
    const target = [method, url].filter(Boolean).join(" ");
    let text = `${status} ${statusText}${target ? `: ${target}` : ""}`;
    const detail = describe(provider);
    if (detail) text += ` — ${detail}`;
    if (note) text += ` [${note}]`;
    super(text);
    this.status = status;
    this.statusText = statusText;
    this.response = response ?? null;
    this.requestId = requestId ?? null;
    this.retryAfter = retryAfter ?? null;
    setProvider(this, provider, body);
  }
}

export class NetworkError extends AifetchError {
  constructor(message, { phase = "send", cause } = {}) {
    super(message, { cause });
    this.phase = phase;
  }
}

export class TimeoutError extends AifetchError {
  constructor(message, phase) {
    super(message);
    this.phase = phase;
  }
}

export class AbortError extends AifetchError {
  constructor(reason) {
    super("the request was aborted");
    this.reason = reason;
  }
}

export class ContentTypeError extends AifetchError {}
export class EventTooLargeError extends AifetchError {}
export class IncompleteStreamError extends AifetchError {}
export class InvalidChunkError extends AifetchError {}

export class StreamError extends AifetchError {
  constructor(provider, body) {
    super(`error event in stream — ${describe(provider) || "no details given"}`);
    setProvider(this, provider, body);
  }
}

// ---------------------------------------------------------------------------- redaction

const REDACTED = "[REDACTED]";
const SECRET_HEADERS = new Set([
  "authorization", "proxy-authorization", "api-key", "x-api-key", "cookie", "x-goog-api-key",
]);
const SECRET_QUERY_KEYS = new Set([
  "key", "api_key", "apikey", "api-key", "token", "access_token", "refresh_token", "id_token",
  "secret", "client_secret", "password", "sig", "signature", "code", "x-amz-signature",
  "x-amz-security-token", "x-amz-credential", "x-goog-signature", "x-goog-credential",
]);

function isSecretHeader(name) {
  const n = name.toLowerCase();
  if (SECRET_HEADERS.has(n) || /[-_]key$/.test(n) || n.includes("secret") || n.includes("password")) {
    return true;
  }
  // x-auth-token is a secret; x-ratelimit-remaining-tokens is a counter needed to debug a 429.
  return n.split(/[-_.]/).some((seg) => seg.includes("token") && seg !== "tokens");
}

function isSecretKey(raw) {
  let key = raw;
  try {
    key = decodeURIComponent(raw.replace(/\+/g, " "));
  } catch {}
  return SECRET_QUERY_KEYS.has(key.trim().toLowerCase());
}

function redactPairs(part) {
  return part
    .split(/([&?])/)
    .map((piece, i) => {
      if (i % 2) return piece;
      const eq = piece.indexOf("=");
      return eq > 0 && eq < piece.length - 1 && isSecretKey(piece.slice(0, eq))
        ? `${piece.slice(0, eq)}=${REDACTED}`
        : piece;
    })
    .join("");
}

// The URL with its userinfo and secret query and fragment values hidden; the rest as given.
function redactUrl(url) {
  let out = url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, `$1${REDACTED}@`);
  const hash = out.indexOf("#");
  let fragment = "";
  if (hash >= 0) [out, fragment] = [out.slice(0, hash), `#${redactPairs(out.slice(hash + 1))}`];
  const q = out.indexOf("?");
  if (q >= 0) out = out.slice(0, q + 1) + redactPairs(out.slice(q + 1));
  return out + fragment;
}

// The secret values a request carries, to hide them in text a server sent back (a provider
// may quote the key it was given in its error message).
function requestSecrets(headers, url) {
  const found = [];
  for (const [name, value] of headers) {
    if (!isSecretHeader(name)) continue;
    found.push(value);
    const space = value.trim().indexOf(" ");
    if (space > 0) found.push(value.trim().slice(space + 1).trim());
  }
  const query = url.split("#")[0].split("?")[1] ?? "";
  for (const pair of query.split("&")) {
    const eq = pair.indexOf("=");
    if (eq > 0 && eq < pair.length - 1 && isSecretKey(pair.slice(0, eq))) found.push(pair.slice(eq + 1));
  }
  return found.filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
}

function redactText(text, secrets) {
  for (const secret of secrets) text = text.split(secret).join(REDACTED);
  return text;
}

// ---------------------------------------------------------------------------- provider errors

const LOC_SOURCES = new Set(["body", "query", "path", "header", "cookie"]);
const TEXT_MESSAGE_CHARS = 500;
const REQUEST_ID_HEADERS = ["x-request-id", "request-id", "x-amzn-requestid", "cf-ray"];

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// A field value as text: numbers as written (429 -> "429"), structures as JSON, "" as missing.
function asText(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value || null;
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : null;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function build(message, type, code, param) {
  const err = { message: asText(message), type: asText(type), code: asText(code), param: asText(param) };
  return err.message || err.type || err.code || err.param ? err : null;
}

// FastAPI's ["body", "messages", 0, "content"] -> "messages[0].content".
function locToParam(loc) {
  if (!Array.isArray(loc) || !loc.length) return null;
  const parts = loc.length > 1 && LOC_SOURCES.has(loc[0]) ? loc.slice(1) : loc;
  let out = "";
  for (const part of parts) {
    if (Number.isInteger(part)) out += `[${part}]`;
    else out += out ? `.${part}` : String(part);
  }
  return out || null;
}

function fromDict(obj) {
  // OpenAI {"error": {...}}, Anthropic {"type": "error", "error": {...}}, Google
  // {"error": {"code": 429, "message", "status"}}, and plain {"error": "text"}.
  const err = obj.error;
  if (isObject(err)) {
    // Google's "status" is the canonical name; Azure's is an int HTTP status, not a type.
    const type = err.type ?? (typeof err.status === "string" ? err.status : null);
    const found = build(err.message, type, err.code, err.param);
    if (found) return found;
  } else if (typeof err === "string" && err) {
    return build(err, obj.type !== "error" ? obj.type : null, null, null);
  }
  if ("message" in obj) return build(obj.message, obj.type, obj.code, obj.param);
  const detail = obj.detail;
  if (Array.isArray(detail)) {
    const entries = detail.filter(isObject);
    if (!entries.length) return build(detail.map(asText).filter(Boolean).join("; "), null, null, null);
    const msgs = entries.map((e) => asText(e.msg)).filter(Boolean);
    return build(msgs.join("; "), entries[0].type, null, locToParam(entries[0].loc));
  }
  if (isObject(detail)) return fromDict(detail);
  return detail === null || detail === undefined ? null : build(detail, null, null, null);
}

/** The provider error in a decoded JSON error body, or null if no known shape matches. */
export function providerError(obj) {
  if (Array.isArray(obj)) obj = obj.length ? obj[0] : null; // Google's list wrapper
  return isObject(obj) ? fromDict(obj) : null;
}

function textError(text) {
  const collapsed = text.split(/\s+/).filter(Boolean).join(" ").slice(0, TEXT_MESSAGE_CHARS);
  return collapsed ? { message: collapsed, type: null, code: null, param: null } : null;
}

/** [parsed body, provider error] for an error body (text). JSON is tried whatever the
 * Content-Type says: proxies label JSON errors text/html often enough not to trust it. */
export function parseErrorBody(text) {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    return [text, textError(text)];
  }
  return [parsed, typeof parsed === "string" ? textError(parsed) : providerError(parsed)];
}

function requestIdOf(headers) {
  for (const name of REQUEST_ID_HEADERS) {
    const value = headers.get(name)?.trim();
    if (value) return value.slice(0, 256);
  }
  return null;
}

// ---------------------------------------------------------------------------- retry timing

const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/;
// Go's time.Duration text, which OpenAI's x-ratelimit-reset-* headers carry ("6m0s", "20ms").
const DURATION = /^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|us|µs|μs|ns|h|m|s))+$/;
const DURATION_TERM = /(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|μs|ns|h|m|s)/g;
const UNIT_SECONDS = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, "µs": 1e-6, "μs": 1e-6, ns: 1e-9 };
const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

const finite = (x) => (Number.isFinite(x) ? x : null);

function parseNumber(text) {
  const s = text.trim();
  return NUMBER.test(s) ? finite(Number(s)) : null;
}

function parseDuration(text) {
  let s = text.trim();
  let sign = 1;
  if (s[0] === "+" || s[0] === "-") [sign, s] = [s[0] === "-" ? -1 : 1, s.slice(1)];
  if (s === "0") return 0;
  if (!DURATION.test(s)) return null; // a bare number could be seconds or an epoch: no guess
  let total = 0;
  for (const [, n, unit] of s.matchAll(DURATION_TERM)) total += Number(n) * UNIT_SECONDS[unit];
  return finite(sign * total);
}

// RFC 9110 §5.6.7: IMF-fixdate, the obsolete RFC 850 and asctime forms; all GMT (a numeric
// zone is honoured too, as Python's email.utils does). Each pattern's groups in the order
// day, month, year, hours, minutes, seconds, zone.
const HTTP_DATES = [
  [/^[a-z]{3},\s*(\d{1,2})\s+([a-z]{3})\s+(\d{4})\s+(\d\d):(\d\d):(\d\d)\s*(gmt|utc|ut|z|[+-]\d{4})?$/i, [1, 2, 3, 4, 5, 6, 7]],
  [/^[a-z]+,\s*(\d{1,2})-([a-z]{3})-(\d{2,4})\s+(\d\d):(\d\d):(\d\d)\s*(gmt)?$/i, [1, 2, 3, 4, 5, 6, 7]],
  [/^[a-z]{3}\s+([a-z]{3})\s+(\d{1,2})\s+(\d\d):(\d\d):(\d\d)\s+(\d{4})$/i, [2, 1, 6, 3, 4, 5, 0]],
];

function parseHttpDate(text) {
  for (const [pattern, order] of HTTP_DATES) {
    const match = pattern.exec(text.trim());
    if (!match) continue;
    const [day, month, year, hh, mm, ss, zone] = order.map((i) => (i ? match[i] : undefined));
    const m = MONTHS.indexOf(month.toLowerCase());
    let y = Number(year);
    if (y < 100) y += y > 68 ? 1900 : 2000; // two-digit years, as Python's email.utils reads them
    const when = new Date(Date.UTC(y, m, Number(day), Number(hh), Number(mm), Number(ss)));
    if (m < 0 || when.getUTCDate() !== Number(day)) return null; // "32 Nov" must not roll over
    const offset = /^[+-]\d{4}$/.test(zone ?? "")
      ? (zone[0] === "-" ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3))) * 60000
      : 0;
    return when.getTime() - offset;
  }
  return null;
}

/** Seconds the server asked the client to wait before retrying, or null if it did not say.
 * Sources, first usable one wins: retry-after-ms (OpenAI), Retry-After (seconds or an
 * HTTP-date), the exhausted x-ratelimit-reset-{requests,tokens} durations, RateLimit-Reset. */
export function serverWait(headers, now = Date.now()) {
  const get = (name) => headers.get(name);
  let wait = null;
  let raw = get("retry-after-ms");
  if (raw !== null) wait = parseNumber(raw) === null ? null : parseNumber(raw) / 1000;
  if (wait === null && (raw = get("retry-after")) !== null) {
    wait = parseNumber(raw);
    if (wait === null) {
      const at = parseHttpDate(raw);
      wait = at === null ? null : (at - now) / 1000;
    }
  }
  if (wait === null) {
    // A reset time for a limit that still has room is no reason to wait.
    const waits = [];
    for (const kind of ["requests", "tokens"]) {
      const reset = get(`x-ratelimit-reset-${kind}`);
      const seconds = reset === null ? null : parseDuration(reset);
      if (seconds === null) continue;
      const remaining = get(`x-ratelimit-remaining-${kind}`);
      if (remaining === null || parseNumber(remaining) === 0) waits.push(seconds);
    }
    if (waits.length) wait = Math.max(...waits);
  }
  if (wait === null && (raw = get("ratelimit-reset")) !== null) wait = parseNumber(raw);
  return wait === null ? null : Math.max(0, wait);
}

// Full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015): a crowd of
// clients that failed together is spread over the whole window instead of re-synchronised.
function backoffDelay(retry, base, cap, rand = Math.random) {
  return Math.max(0, rand() * Math.min(cap, base * 2 ** Math.min(Math.max(retry, 0), 64)));
}

// ---------------------------------------------------------------------------- Server-Sent Events

const LF = 10;
const CR = 13;
const SPACE = 32;
const DIGITS = /^[0-9]+$/;

/** Event stream bytes in, events out: WHATWG HTML §9.2.5 (parsing) and §9.2.6 (interpreting),
 * at any chunking. Sans-IO: feed(bytes) returns the events those bytes complete. */
export class SSEDecoder {
  constructor({ maxEventSize = 16 * 1024 * 1024, onComment = null } = {}) {
    this.maxEventSize = maxEventSize;
    this.onComment = onComment;
    this.lastEventId = "";
    this.retry = undefined;
    this._id = ""; // the id buffer; it becomes lastEventId when a block ends
    this._start();
  }

  _start() {
    // §9.2.5: the stream is UTF-8, one leading BOM dropped, invalid bytes U+FFFD. That is
    // exactly TextDecoder's "utf-8" decode (BOM sniffing on, not fatal), streamed, so a
    // character split across reads stays whole.
    this._utf8 = new TextDecoder();
    this._line = ""; // the unterminated line
    this._skipLF = false; // the last read ended in a CR: an LF first in the next one is its pair
    this._newBlock();
  }

  _newBlock() {
    this._data = "";
    this._hasData = false;
    this._size = 0; // data buffer length, each value plus its LF
    this._event = "";
    this._blockRetry = undefined;
  }

  /** Decode the next bytes; return the events they complete. */
  feed(bytes) {
    const out = [];
    const text = this._utf8.decode(bytes, { stream: true });
    let pos = 0;
    if (this._skipLF && text.length) {
      this._skipLF = false;
      if (text.charCodeAt(0) === LF) pos = 1;
    }
    // Lines end at CRLF, LF or CR and nothing else (§9.2.5). Most streams never send a CR,
    // and a read without one takes the LF-only loop.
    pos = text.indexOf("\r", pos) === -1 ? this._lfLines(text, pos, out) : this._anyLines(text, pos, out);
    if (pos < text.length) this._line += text.slice(pos);
    if (this._line.length + this._size > this.maxEventSize) throw this._tooLarge();
    return out;
  }

  // LF-only text from `pos`; returns where the unterminated rest starts.
  _lfLines(text, pos, out) {
    let lf = text.indexOf("\n", pos);
    if (lf !== -1 && this._line) {
      const line = this._line + text.slice(pos, lf);
      this._line = "";
      this._lineDone(line, out);
      pos = lf + 1;
      lf = text.indexOf("\n", pos);
    }
    while (lf !== -1) {
      // Fast path: a block that is one "data:" line and its empty line, the shape of every
      // OpenAI chunk, when no other field is pending, becomes an event without a line
      // copy or a data buffer (bench/bench_js.py, Chromium: 6.7M events/s, 5.7M without it).
      if (
        text.charCodeAt(pos) === 100 && // "d"
        text.charCodeAt(pos + 4) === 58 && // ":"
        text.charCodeAt(lf + 1) === LF &&
        !this._hasData &&
        text.startsWith("data", pos)
      ) {
        if (lf - pos > this.maxEventSize) throw this._tooLarge();
        const data = text.slice(text.charCodeAt(pos + 5) === SPACE ? pos + 6 : pos + 5, lf);
        this.lastEventId = this._id;
        out.push({ event: this._event || "message", data, id: this._id, retry: this._blockRetry });
        if (this._event || this._blockRetry !== undefined) this._newBlock();
        pos = lf + 2;
      } else {
        this._lineDone(text.slice(pos, lf), out);
        pos = lf + 1;
      }
      lf = text.indexOf("\n", pos);
    }
    return pos;
  }

  // Text with CRs from `pos`; returns where the unterminated rest starts. The next CR is
  // looked up only when the scan passes it, so the work stays linear.
  _anyLines(text, pos, out) {
    const n = text.length;
    let cr = text.indexOf("\r", pos);
    while (pos < n) {
      const lf = text.indexOf("\n", pos);
      if (cr !== -1 && cr < pos) cr = text.indexOf("\r", pos);
      const end = cr !== -1 && (lf === -1 || cr < lf) ? cr : lf;
      if (end === -1) break;
      const line = this._line ? this._line + text.slice(pos, end) : text.slice(pos, end);
      this._line = "";
      pos = end + 1;
      if (end === cr) {
        // A CR that ends a read ends its line now, so a lone-CR stream never stalls.
        if (pos === n) this._skipLF = true;
        else if (text.charCodeAt(pos) === LF) pos++;
      }
      this._lineDone(line, out);
    }
    return pos;
  }

  /** End the stream: an unterminated last block is discarded, not dispatched (§9.2.5). The
   * decoder is then ready for a new stream, keeping lastEventId and retry. */
  close() {
    this._utf8.decode();
    this._start();
    return [];
  }

  _lineDone(line, out) {
    if (line.length + this._size > this.maxEventSize) throw this._tooLarge();
    if (line === "") return this._dispatch(out);
    const colon = line.indexOf(":");
    if (colon === 0) {
      if (this.onComment) this.onComment(line.slice(line.charCodeAt(1) === SPACE ? 2 : 1));
      return;
    }
    let name = line;
    let value = "";
    if (colon > 0) {
      name = line.slice(0, colon);
      value = line.slice(line.charCodeAt(colon + 1) === SPACE ? colon + 2 : colon + 1);
    }
    switch (name) {
      case "data":
        this._data = this._hasData ? `${this._data}\n${value}` : value;
        this._hasData = true;
        this._size += value.length + 1;
        break;
      case "event":
        this._event = value;
        break;
      case "id":
        if (!value.includes("\0")) this._id = value; // an id with U+0000 is ignored
        break;
      case "retry":
        // Only ASCII digits; a number too large to be meant is ignored too.
        if (DIGITS.test(value) && Number.isFinite(Number(value))) this._blockRetry = this.retry = Number(value);
        break;
      // Any other field is ignored.
    }
  }

  // An empty line (§9.2.6 "dispatch the event"): the id buffer becomes the last event ID
  // even when the block has no data; only a block with data makes an event.
  _dispatch(out) {
    this.lastEventId = this._id;
    if (this._hasData) {
      out.push({ event: this._event || "message", data: this._data, id: this._id, retry: this._blockRetry });
    }
    this._newBlock();
  }

  _tooLarge() {
    return new EventTooLargeError(
      `an event stream event exceeded maxEventSize=${this.maxEventSize} characters; raise the limit if such events are expected`,
    );
  }
}

/** The events of a text/event-stream response, as an async iterable. A non-2xx response
 * rejects with HTTPError (its body parsed), a 2xx of another type with ContentTypeError. */
export async function* readEvents(response, options = {}) {
  await expectStream(response);
  if (!response.body) return;
  const decoder = new SSEDecoder(options);
  const reader = response.body.getReader();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const events = decoder.feed(value);
      for (let i = 0; i < events.length; i++) yield events[i];
    }
    finished = true;
    decoder.close();
  } finally {
    // Left early (break, an error): cancel the body so its connection is closed.
    if (!finished) reader.cancel().catch(() => {});
  }
}

async function expectStream(response) {
  if (!response.ok && response.type !== "opaqueredirect") throw await httpErrorOf(response);
  const type = response.headers.get("content-type") ?? "";
  if (!/^\s*text\/event-stream\s*(;|$)/i.test(type)) {
    response.body?.cancel().catch(() => {});
    throw new ContentTypeError(
      `expected a text/event-stream response, got ${type ? `'${type.slice(0, 100)}'` : "no Content-Type"}; ` +
        "was the request sent with stream: true?",
    );
  }
}

// ---------------------------------------------------------------------------- OpenAI chat streams

class ToolCallState {
  constructor(index, id) {
    this.index = index;
    this.id = id;
    this.type = null;
    this.name = null;
    this.arguments = [];
  }

  add(piece) {
    // id, type and name are taken once: vLLM, Ollama and others resend them on later deltas.
    if (piece.id && !this.id) this.id = piece.id;
    if (piece.type && !this.type) this.type = piece.type;
    const fn = piece.function;
    if (fn) {
      if (fn.name && !this.name) this.name = fn.name;
      if (fn.arguments) this.arguments.push(fn.arguments);
    }
  }

  build() {
    return {
      id: this.id || "",
      type: this.type || "function",
      function: { name: this.name || "", arguments: this.arguments.join("") },
    };
  }
}

class ChoiceState {
  constructor() {
    this.role = null;
    this.content = [];
    this.refusal = [];
    this.reasoning = [];
    this.tools = [];
    this.byIndex = new Map();
    this.byId = new Map();
    this.lastTool = null;
    this.hasFunctionCall = false;
    this.fnName = null;
    this.fnArguments = [];
    this.logprobsContent = null;
    this.logprobsRefusal = null;
    this.finishReason = null;
  }

  add(choice) {
    const delta = choice.delta ?? {};
    if (delta.role && !this.role) this.role = delta.role;
    if (delta.content !== null && delta.content !== undefined) this.content.push(delta.content);
    if (delta.refusal) this.refusal.push(delta.refusal);
    if (delta.reasoning_content) this.reasoning.push(delta.reasoning_content);
    for (const piece of delta.tool_calls ?? []) this.toolFor(piece).add(piece);
    const fc = delta.function_call;
    if (fc !== null && fc !== undefined) {
      this.hasFunctionCall = true;
      if (fc.name && !this.fnName) this.fnName = fc.name;
      if (fc.arguments) this.fnArguments.push(fc.arguments);
    }
    const lp = choice.logprobs;
    if (lp) {
      if (lp.content) (this.logprobsContent ??= []).push(...lp.content);
      if (lp.refusal) (this.logprobsRefusal ??= []).push(...lp.refusal);
    }
    if (choice.finish_reason !== null && choice.finish_reason !== undefined) this.finishReason = choice.finish_reason;
  }

  // Matched by index; without one (Ollama) by id; a piece with neither continues the last
  // call. A known index arriving with another id starts a new call (some servers number
  // every parallel call 0).
  toolFor(piece) {
    const hasIndex = piece.index !== null && piece.index !== undefined;
    let tool;
    if (hasIndex) {
      tool = this.byIndex.get(piece.index);
      if (tool && piece.id && tool.id && piece.id !== tool.id) tool = undefined;
    } else if (piece.id) {
      tool = this.byId.get(piece.id);
    } else {
      tool = this.lastTool;
    }
    if (!tool) {
      tool = new ToolCallState(hasIndex ? piece.index : null, piece.id || null);
      this.tools.push(tool);
      if (hasIndex) this.byIndex.set(piece.index, tool);
    }
    if (piece.id && !this.byId.has(piece.id)) this.byId.set(piece.id, tool);
    this.lastTool = tool;
    return tool;
  }

  build(index) {
    const toolCalls = this.tools.map((t) => t.build());
    const refusal = this.refusal.join("") || null;
    let content = this.content.join("");
    // OpenAI answers "content": null, not "", for a tool call, a function call or a refusal.
    if (!content && (!this.content.length || toolCalls.length || this.hasFunctionCall || refusal)) content = null;
    const message = { role: this.role || "assistant", content, refusal };
    if (this.reasoning.length) message.reasoning_content = this.reasoning.join("");
    if (toolCalls.length) message.tool_calls = toolCalls;
    if (this.hasFunctionCall) message.function_call = { name: this.fnName || "", arguments: this.fnArguments.join("") };
    const logprobs =
      this.logprobsContent || this.logprobsRefusal
        ? { content: this.logprobsContent && [...this.logprobsContent], refusal: this.logprobsRefusal && [...this.logprobsRefusal] }
        : null;
    return { index, message, logprobs, finish_reason: this.finishReason };
  }
}

/** Folds chat.completion.chunk objects into the chat.completion they add up to, with the
 * Python ChatCompletionAccumulator's rules. Each text field collects its pieces and final()
 * joins them once, so the work stays linear in the answer's size. */
export class ChatAccumulator {
  constructor() {
    this._choices = new Map();
    this._id = "";
    this._model = "";
    this._created = 0;
    this._fingerprint = null;
    this._tier = null;
    this._usage = null;
  }

  add(chunk) {
    // Header fields come from the first chunk that has them (Azure's prompt-filter chunk
    // has id "" and created 0); usage from the last chunk that has it.
    if (!this._id && chunk.id) this._id = chunk.id;
    if (!this._model && chunk.model) this._model = chunk.model;
    if (!this._created && chunk.created) this._created = chunk.created;
    if (this._fingerprint === null && chunk.system_fingerprint) this._fingerprint = chunk.system_fingerprint;
    if (this._tier === null && chunk.service_tier) this._tier = chunk.service_tier;
    if (chunk.usage) this._usage = chunk.usage;
    for (const choice of chunk.choices ?? []) {
      const index = choice.index ?? 0;
      let state = this._choices.get(index);
      if (!state) this._choices.set(index, (state = new ChoiceState()));
      state.add(choice);
    }
  }

  /** The completion the chunks added so far add up to; a new object on every call. */
  final() {
    return {
      id: this._id,
      object: "chat.completion",
      created: this._created,
      model: this._model,
      choices: [...this._choices.keys()].sort((a, b) => a - b).map((i) => this._choices.get(i).build(i)),
      usage: this._usage,
      service_tier: this._tier,
      system_fingerprint: this._fingerprint,
    };
  }
}

const PREVIEW_CHARS = 200;

/** The chat.completion.chunk objects of a streaming chat response (async iterable), and
 * final(), the accumulated chat.completion. A stream that ends without data: [DONE] rejects
 * with IncompleteStreamError, so a cut answer never looks complete. */
export class ChatStream {
  constructor(response, options = {}) {
    this.accumulator = new ChatAccumulator();
    this.count = 0;
    this.done = false;
    this._error = null;
    this._chunks = this._read(response, options);
  }

  [Symbol.asyncIterator]() {
    return this._chunks;
  }

  async *_read(response, options) {
    try {
      for await (const event of readEvents(response, options)) {
        const chunk = this._take(event);
        if (this.done) break; // anything after [DONE] is not part of the answer
        if (chunk) yield chunk;
      }
      if (!this.done) throw new IncompleteStreamError(`the stream ended after ${this.count} chunks without [DONE]`);
    } catch (err) {
      this._error ??= err;
      throw err;
    }
  }

  _take(event) {
    if (event.event !== "message") {
      if (event.event === "error") throw new StreamError(...swap(parseErrorBody(event.data)));
      return null; // a vendor event (e.g. "ping") that is not part of the chunk stream
    }
    const data = event.data;
    if (!data) return null; // keep-alive: a data line with nothing in it
    if (data === "[DONE]") {
      this.done = true;
      return null;
    }
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch (err) {
      throw this._invalid(data, err.message);
    }
    if (!isObject(chunk)) throw this._invalid(data, "not a JSON object");
    // Only a top-level "error" counts: Azure nests one in content_filter_results.
    if (chunk.error) throw new StreamError(providerError(chunk), chunk);
    this.count++;
    this.accumulator.add(chunk);
    return chunk;
  }

  _invalid(data, why) {
    const preview = data.length > PREVIEW_CHARS ? `${data.slice(0, PREVIEW_CHARS)}…` : data;
    return new InvalidChunkError(`event ${this.count + 1} of the stream is not a chat.completion.chunk (${why}): ${preview}`);
  }

  /** The content text of choice 0, piece by piece. */
  async *textDeltas() {
    for await (const chunk of this) {
      // Matched by index, not position: with n > 1 a chunk may carry only choice 1.
      const text = chunk.choices?.find((c) => (c.index ?? 0) === 0)?.delta?.content;
      if (text) yield text;
    }
  }

  /** Read what is left, then return the accumulated chat.completion (or throw the stream's
   * error, or IncompleteStreamError when it was left before [DONE]). */
  async final() {
    for await (const _ of this._chunks);
    if (this._error) throw this._error;
    if (!this.done) throw new IncompleteStreamError(`the stream was closed after ${this.count} chunks, before [DONE]`);
    return this.accumulator.final();
  }
}

const swap = ([body, provider]) => [provider, body];

export function readChat(response, options) {
  return new ChatStream(response, options);
}

// ---------------------------------------------------------------------------- aifetch()

const RETRY_STATUSES = [408, 429, 500, 502, 503, 504];
const MAX_ERROR_BODY = 1 << 20;
const REASONS = {
  400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
  405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
  422: "Unprocessable Content", 429: "Too Many Requests", 500: "Internal Server Error",
  502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
};
// What aifetch() knows about the request behind a response it returned: for error messages.
const requests = new WeakMap();

const now = () => (globalThis.performance ?? Date).now();

function retryPolicy(retry) {
  if (retry === undefined || retry === null || retry === false) return { attempts: 1 };
  const r = typeof retry === "number" ? { attempts: retry } : retry;
  return {
    attempts: Math.max(1, r.attempts ?? 3),
    statuses: new Set(r.statuses ?? RETRY_STATUSES),
    maxServerWait: r.maxServerWait ?? 60_000,
    backoff: r.backoff ?? 500,
    cap: r.cap ?? 8_000,
  };
}

function absolute(url) {
  try {
    return new URL(url, globalThis.location?.href).href;
  } catch {
    return String(url);
  }
}

/** One call: the caller's signal and the total deadline, over every attempt and the body. */
class Call {
  constructor(method, url, signal, total) {
    this.label = `${method} ${redactUrl(url)}`;
    this.controller = new AbortController();
    this.deadline = total ? now() + total : Infinity;
    this.cleanups = [];
    if (signal) {
      const stop = () => this.controller.abort(new AbortError(signal.reason));
      if (signal.aborted) stop();
      signal.addEventListener("abort", stop, { once: true });
      this.cleanups.push(() => signal.removeEventListener("abort", stop));
    }
    if (total) {
      const timer = setTimeout(
        () => this.controller.abort(new TimeoutError(`${this.label} did not complete within total=${total} ms`, "total")),
        total,
      );
      this.cleanups.push(() => clearTimeout(timer));
    }
  }

  get signal() {
    return this.controller.signal;
  }

  end() {
    for (const cleanup of this.cleanups.splice(0)) cleanup();
  }

  // One attempt: its own controller follows the call's, and the firstByte timer aborts it.
  async send(input, init, firstByte) {
    if (this.signal.aborted) throw this.signal.reason;
    const attempt = new AbortController();
    const follow = () => attempt.abort(this.signal.reason);
    this.signal.addEventListener("abort", follow, { once: true });
    this.detach = () => this.signal.removeEventListener("abort", follow);
    const timer =
      firstByte &&
      setTimeout(
        () => attempt.abort(new TimeoutError(`${this.label}: no response headers within firstByte=${firstByte} ms`, "firstByte")),
        firstByte,
      );
    try {
      this.attempt = attempt;
      return await fetch(input instanceof Request ? input.clone() : input, { ...init, signal: attempt.signal });
    } catch (err) {
      this.detach();
      if (attempt.signal.aborted) throw attempt.signal.reason;
      throw new NetworkError(
        `${this.label} failed: ${err?.message ?? err} (is the server up, and does its CORS allow this page's origin?)`,
        { phase: "send", cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  sleep(ms) {
    return new Promise((resolve, reject) => {
      const signal = this.signal;
      if (signal.aborted) return reject(signal.reason);
      const wake = () => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", wake);
        resolve();
      }, ms);
      signal.addEventListener("abort", wake, { once: true });
    });
  }

  // The response handed on: its body read under the idle timer, the call's deadline and
  // signal, with failures mapped to aifetch's errors. The call ends with the body.
  guard(response, idle) {
    if (!response.body) {
      this.end();
      return response;
    }
    const { attempt, label } = this;
    const reader = response.body.getReader();
    const end = () => {
      this.detach();
      this.end();
    };
    const body = new ReadableStream(
      {
        async pull(controller) {
          // highWaterMark 0: pull runs only while the reader waits, so a slow consumer is
          // never taken for a stalled server.
          const timer =
            idle &&
            setTimeout(() => attempt.abort(new TimeoutError(`${label}: no data for idle=${idle} ms while reading the body`, "idle")), idle);
          try {
            const { done, value } = await reader.read();
            if (done) {
              end();
              controller.close();
            } else {
              controller.enqueue(value);
            }
          } catch (err) {
            end();
            controller.error(
              attempt.signal.aborted
                ? attempt.signal.reason
                : new NetworkError(`${label}: the response body broke off: ${err?.message ?? err}`, { phase: "body", cause: err }),
            );
          } finally {
            clearTimeout(timer);
          }
        },
        cancel(reason) {
          end();
          return reader.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
    const out = new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
    for (const key of ["url", "redirected", "type"]) Object.defineProperty(out, key, { value: response[key] });
    return out;
  }
}

/** fetch(), plus: a non-2xx status rejects with HTTPError (throwHttpErrors: false gives the
 * response back), `json`, `timeout: {firstByte, idle, total}` in ms, `retry: {attempts,
 * statuses, maxServerWait, backoff, cap}` where attempts counts every try, and a `signal`
 * that aborts the call, its retries and its body reads with AbortError. */
export async function aifetch(input, init = {}) {
  const { json, timeout, retry, throwHttpErrors = true, signal, ...options } = init;
  const isRequest = input instanceof Request;
  const headers = new Headers(options.headers ?? (isRequest ? input.headers : undefined));
  if (json !== undefined) {
    options.body = JSON.stringify(json);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
  }
  options.headers = headers;
  const method = (options.method ?? (isRequest ? input.method : "GET")).toUpperCase();
  const url = absolute(isRequest ? input.url : input);
  const phases = typeof timeout === "number" ? { firstByte: timeout, idle: timeout } : timeout ?? {};
  const policy = retryPolicy(retry);
  const replayable = !(options.body instanceof ReadableStream);
  const call = new Call(method, url, signal, phases.total);
  const meta = { method, secrets: requestSecrets(headers, url) };
  try {
    for (let attempt = 1; ; attempt++) {
      const more = attempt < policy.attempts && replayable;
      let response;
      try {
        response = await call.send(input, options, phases.firstByte);
      } catch (err) {
        // Only failures before any response are retried: a refused or broken connection,
        // or no headers in time. Never an abort, and never once a body was handed on.
        const again = err instanceof NetworkError || (err instanceof TimeoutError && err.phase === "firstByte");
        const delay = backoffDelay(attempt - 1, policy.backoff, policy.cap);
        if (!again || !more || now() + delay >= call.deadline) throw err;
        await call.sleep(delay);
        continue;
      }
      if (!response.ok && policy.statuses?.has(response.status)) {
        const asked = serverWait(response.headers);
        if (asked !== null && asked * 1000 > policy.maxServerWait) {
          // Said loudly, whatever throwHttpErrors is: not a give-up that looks like a 429.
          const note = `server asked to wait ${asked} s, more than maxServerWait=${policy.maxServerWait} ms`;
          throw await httpErrorOf(remember(call.guard(response, phases.idle), meta), note);
        }
        // A wait the server asked for is used as given, without jitter.
        const delay = asked !== null ? asked * 1000 : backoffDelay(attempt - 1, policy.backoff, policy.cap);
        if (more && now() + delay < call.deadline) {
          call.detach();
          response.body?.cancel().catch(() => {});
          await call.sleep(delay);
          continue;
        }
      }
      const handed = remember(call.guard(response, phases.idle), meta);
      if (!handed.ok && throwHttpErrors && handed.type !== "opaqueredirect") throw await httpErrorOf(handed);
      return handed;
    }
  } catch (err) {
    call.end();
    throw err;
  }
}

function remember(response, meta) {
  requests.set(response, meta);
  return response;
}

async function readCapped(response, limit) {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const parts = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    size += value.length;
    if (size >= limit) {
      reader.cancel().catch(() => {});
      break;
    }
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return new TextDecoder().decode(all.subarray(0, limit));
}

// The HTTPError for a non-2xx response, its body read (up to 1 MiB) and parsed.
async function httpErrorOf(response, note) {
  const meta = requests.get(response) ?? { method: null, secrets: [] };
  const [body, provider] = parseErrorBody(await readCapped(response, MAX_ERROR_BODY));
  if (provider?.message) provider.message = redactText(provider.message, meta.secrets);
  return new HTTPError({
    status: response.status,
    statusText: response.statusText || REASONS[response.status] || "",
    method: meta.method,
    url: redactUrl(response.url),
    response,
    body,
    provider,
    requestId: requestIdOf(response.headers),
    retryAfter: serverWait(response.headers),
    note,
  });
}

export default aifetch;
