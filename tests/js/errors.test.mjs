// The pure parts, with the Python client's cases: provider error shapes, request ids, the
// server's requested wait (Retry-After, retry-after-ms, OpenAI's reset headers), the tree.
import { deepEqual, equal, ok } from "./assert.mjs";
import { af, test } from "./harness.mjs";

const PE = (message = null, type = null, code = null, param = null) => ({ message, type, code, param });

const PROVIDER_CASES = [
  [{ error: { message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key", param: null } },
    PE("Incorrect API key provided", "invalid_request_error", "invalid_api_key")],
  [{ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, PE("Overloaded", "overloaded_error")],
  [{ error: { code: 429, message: "Quota", status: "RESOURCE_EXHAUSTED" } }, PE("Quota", "RESOURCE_EXHAUSTED", "429")],
  [[{ error: { code: 400, message: "Invalid", status: "INVALID_ARGUMENT" } }], PE("Invalid", "INVALID_ARGUMENT", "400")],
  [{ error: { message: "filtered", code: "content_filter", status: 400 } }, PE("filtered", null, "content_filter")],
  [{ error: { message: "m", type: "t", status: "S" } }, PE("m", "t")],
  [{ error: "model not found" }, PE("model not found")],
  [{ error: "boom", type: "server_error" }, PE("boom", "server_error")],
  [{ message: "Too many requests" }, PE("Too many requests")],
  [{ message: "m", type: "t", code: 42, param: "p" }, PE("m", "t", "42", "p")],
  [{ error: {}, message: "fallback" }, PE("fallback")],
  [{ error: true, message: "fallback" }, PE("fallback")],
  [{ detail: "Not authenticated" }, PE("Not authenticated")],
  [{ detail: [{ loc: ["body", "messages", 0, "content"], msg: "Field required", type: "missing" }, { loc: ["body", "model"], msg: "Input should be a string", type: "x" }] },
    PE("Field required; Input should be a string", "missing", null, "messages[0].content")],
  [{ detail: [{ loc: ["query", "limit"], msg: "too big", type: "less_than" }] }, PE("too big", "less_than", null, "limit")],
  [{ detail: [{ loc: [0, "x"], msg: "m" }] }, PE("m", null, null, "[0].x")],
  [{ detail: ["plain", "strings"] }, PE("plain; strings")],
  [{ detail: { message: "nested" } }, PE("nested")],
  [{ detail: 404 }, PE("404")],
  [{ message: true }, PE("true")],
  [{ message: { a: [1, 2] } }, PE('{"a":[1,2]}')],
  [{ message: "", code: "c" }, PE(null, null, "c")],
  [{}, null], [{ error: {} }, null], [{ message: null }, null], [{ detail: [] }, null],
  [{ foo: "bar" }, null], [[], null], [[[{ error: "too deep" }]], null], ["a string", null], [42, null], [null, null],
];

test("provider error shapes (OpenAI, Anthropic, Google, Azure, FastAPI, plain)", () => {
  for (const [obj, expected] of PROVIDER_CASES) deepEqual(af.providerError(obj), expected, JSON.stringify(obj));
});

test("error bodies: JSON under any label, a BOM, text collapsed and capped", () => {
  deepEqual(af.parseErrorBody('\ufeff{"message": "m"}'), [{ message: "m" }, PE("m")]);
  deepEqual(af.parseErrorBody("  \n{\"detail\": \"x\"}\n"), [{ detail: "x" }, PE("x")]);
  deepEqual(af.parseErrorBody("429"), [429, null]);
  deepEqual(af.parseErrorBody('"quota   exceeded\\n"'), ["quota   exceeded\n", PE("quota exceeded")]);
  const html = "<html><body>\n  <h1>502 Bad Gateway</h1>\n</body></html>";
  deepEqual(af.parseErrorBody(html), [html, PE("<html><body> <h1>502 Bad Gateway</h1> </body></html>")]);
  deepEqual(af.parseErrorBody(""), ["", null]);
  deepEqual(af.parseErrorBody('{"message": "oops'), ['{"message": "oops', PE('{"message": "oops')]);
  const [, long] = af.parseErrorBody("word \n\n\t ".repeat(400));
  equal(long.message.length, 500);
  const [, deep] = af.parseErrorBody("[".repeat(100000));
  equal(deep.message, "[".repeat(500));
});

const NOW = 1_700_000_000_000; // 2023-11-14T22:13:20Z
const wait = (headers) => af.serverWait(new Headers(headers), NOW);

test("the server's requested wait, first usable source wins", () => {
  const cases = [
    [{}, null],
    [{ "retry-after-ms": "1500" }, 1.5],
    [{ "retry-after-ms": "1500", "retry-after": "9" }, 1.5],
    [{ "retry-after-ms": "abc", "retry-after": "9" }, 9],
    [{ "retry-after-ms": "1e3" }, null],
    [{ "retry-after-ms": "-100" }, 0],
    [{ "Retry-After": "120" }, 120],
    [{ "Retry-After": "1.5" }, 1.5],
    [{ "Retry-After": "-5" }, 0],
    [{ "Retry-After": "9".repeat(400) }, null],
    [{ "Retry-After": "Tue, 14 Nov 2023 22:13:50 GMT" }, 30],
    [{ "Retry-After": "Tue, 14 Nov 2023 22:12:50 GMT" }, 0],
    [{ "Retry-After": "Tuesday, 14-Nov-23 22:14:00 GMT" }, 40],
    [{ "Retry-After": "Tue Nov 14 22:14:00 2023" }, 40],
    [{ "Retry-After": "Tue, 14 Nov 2023 22:14:00 +0100" }, 0],
    [{ "Retry-After": "Tue, 32 Nov 2023 22:14:00 GMT" }, null],
    [{ "Retry-After": "soon" }, null],
    [{ "Retry-After": "garbage", "RateLimit-Reset": "7" }, 7],
    [{ "x-ratelimit-reset-requests": "1s", "x-ratelimit-remaining-requests": "0" }, 1],
    [{ "x-ratelimit-reset-requests": "1s", "x-ratelimit-remaining-requests": "3" }, null],
    [{ "x-ratelimit-reset-requests": "1s" }, 1],
    [{ "x-ratelimit-reset-tokens": "6m0s", "x-ratelimit-remaining-tokens": "0" }, 360],
    [{ "x-ratelimit-reset-requests": "2s", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-tokens": "20ms", "x-ratelimit-remaining-tokens": "0" }, 2],
    [{ "x-ratelimit-reset-requests": "2s", "x-ratelimit-remaining-requests": "10", "x-ratelimit-reset-tokens": "20ms", "x-ratelimit-remaining-tokens": "0" }, 0.02],
    [{ "x-ratelimit-reset-tokens": "1h2m3.5s" }, 3723.5],
    [{ "x-ratelimit-reset-tokens": "500µs" }, 0.0005],
    [{ "x-ratelimit-reset-tokens": "1s", "x-ratelimit-remaining-tokens": "abc" }, null],
    [{ "x-ratelimit-reset-tokens": "5" }, null],
    [{ "x-ratelimit-reset-tokens": "-1s", "x-ratelimit-remaining-tokens": "0" }, 0],
    [{ "x-ratelimit-reset-tokens": "5s", "retry-after": "1" }, 1],
    [{ "x-ratelimit-reset-tokens": "5s", "ratelimit-reset": "1" }, 5],
    [{ "RateLimit-Reset": "50" }, 50],
    [{ "Retry-After": "\u00b2" }, null], // "²": only ASCII digits are delay-seconds
  ];
  for (const [headers, expected] of cases) {
    const got = wait(headers);
    if (expected === null) equal(got, null, JSON.stringify(headers));
    else ok(got !== null && Math.abs(got - expected) < 1e-9, `${JSON.stringify(headers)}: expected ${expected}, got ${got}`);
  }
});

test("every error is an AifetchError and names itself", () => {
  for (const Kind of [af.HTTPError, af.NetworkError, af.TimeoutError, af.AbortError, af.StreamError, af.IncompleteStreamError, af.ContentTypeError, af.EventTooLargeError, af.InvalidChunkError]) {
    ok(Kind.prototype instanceof af.AifetchError, Kind.name);
  }
  ok(af.AifetchError.prototype instanceof Error);
  equal(new af.TimeoutError("t", "idle").name, "TimeoutError");
  equal(new af.AbortError("why").reason, "why");
});

test("an HTTPError reads like the Python one", () => {
  const err = new af.HTTPError({
    status: 429, statusText: "Too Many Requests", method: "POST", url: "https://api.example.com/v1/chat/completions",
    provider: { message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded", param: null },
  });
  equal(err.message, "429 Too Many Requests: POST https://api.example.com/v1/chat/completions — Rate limit reached (type=requests, code=rate_limit_exceeded)");
  equal(err.name, "HTTPError");
});

test("default export is aifetch", () => {
  equal(af.default, af.aifetch);
});

test("the public surface is what aifetch.d.ts declares", () => {
  deepEqual(Object.keys(af).sort(), [
    "AbortError", "AifetchError", "ChatAccumulator", "ChatStream", "ContentTypeError", "EventTooLargeError",
    "HTTPError", "IncompleteStreamError", "InvalidChunkError", "NetworkError", "SSEDecoder", "StreamError",
    "TimeoutError", "aifetch", "default", "parseErrorBody", "providerError", "readChat", "readEvents", "serverWait",
  ]);
});
