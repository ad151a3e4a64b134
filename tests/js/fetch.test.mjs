// aifetch() against a real gateway on 127.0.0.1 in front of the scripted fake upstream
// (tests/browser/scenarios.py names what each model does).
import { deepEqual, equal, match, ok, rejects } from "./assert.mjs";
import { af, env, test, unique } from "./harness.mjs";

const CHAT = `${env.gateway}/v1/chat/completions`;
const auth = (key = env.key) => ({ authorization: `Bearer ${key}` });
const body = (model, extra = {}) => ({ model, messages: [{ role: "user", content: "hi" }], ...extra });
const post = (model, init = {}, extra = {}) => af.aifetch(CHAT, { method: "POST", headers: auth(), json: body(model, extra), ...init });
const elapsed = (started) => performance.now() - started;

async function drain(response) {
  const reader = response.body.getReader();
  for (;;) if ((await reader.read()).done) return;
}

test("a 2xx resolves with the response", async () => {
  const response = await af.aifetch(`${env.gateway}/v1/models`, { headers: auth() });
  equal(response.status, 200);
  ok((await response.json()).data.some((m) => m.id === "gpt"));
  match(response.url, /\/v1\/models$/);
});

test("json encodes the body and sets the content type", async () => {
  const response = await post("gpt");
  const answer = await response.json();
  equal(answer.choices[0].message.content, "Hello from fake-model");
});

test("401 rejects with HTTPError carrying the gateway's error, never the key", async () => {
  const err = await rejects(af.aifetch(`${env.gateway}/v1/models`, { headers: auth("sk-wrong-key-1234567") }), af.HTTPError);
  equal(err.status, 401);
  equal(err.statusText, "Unauthorized");
  equal(err.code, "invalid_api_key");
  equal(err.type, "invalid_request_error");
  match(err.message, /^401 Unauthorized: GET http:\/\/127\.0\.0\.1:\d+\/v1\/models — .+ \(type=invalid_request_error, code=invalid_api_key\)$/);
  ok(!err.message.includes("sk-wrong-key-1234567"), "the key must not appear");
  equal(err.response.status, 401);
  equal(err.body.error.code, "invalid_api_key");
});

test("403 and 404 name the model", async () => {
  const denied = await rejects(af.aifetch(CHAT, { method: "POST", headers: auth(env.narrowKey), json: body("tools") }), af.HTTPError);
  deepEqual([denied.status, denied.code, denied.param], [403, "model_not_allowed", "model"]);
  const missing = await rejects(post("no-such-model"), af.HTTPError);
  deepEqual([missing.status, missing.code, missing.param], [404, "model_not_found", "model"]);
  match(missing.message, /^404 Not Found: POST .*\/v1\/chat\/completions — The model 'no-such-model' does not exist/);
});

test("400 for a body that is not JSON, with the provider's fields", async () => {
  const err = await rejects(af.aifetch(CHAT, { method: "POST", headers: { ...auth(), "content-type": "application/json" }, body: "{" }), af.HTTPError);
  equal(err.status, 400);
  equal(err.code, "invalid_json");
  ok(err.providerMessage.length > 0);
});

test("an upstream 429 arrives with retryAfter and requestId", async () => {
  const err = await rejects(post("limited-long"), af.HTTPError);
  deepEqual([err.status, err.retryAfter, err.requestId, err.code], [429, 30, "req_fake_429", "rate_limit_exceeded"]);
  match(err.message, /^429 Too Many Requests: POST .* — fake upstream status 429/);
});

test("an upstream 5xx with an HTML body reaches the page as an OpenAI error with its text", async () => {
  // The gateway wraps an upstream error that is not OpenAI-shaped in OpenAI's shape.
  const err = await rejects(post("html-error"), af.HTTPError);
  equal(err.status, 503);
  equal(err.providerMessage, "<html><body> <h1>503 Service Unavailable</h1> </body></html>");
  equal(typeof err.body, "object");
});

test("a secret in the query never reaches the message", async () => {
  const err = await rejects(af.aifetch(`${env.gateway}/v1/nothing-here?key=supersecret123&x=1`, { headers: auth() }), af.HTTPError);
  equal(err.status, 404);
  ok(err.message.includes("key=[REDACTED]&x=1"), err.message);
  ok(!err.message.includes("supersecret123"), err.message);
});

test("throwHttpErrors: false gives the response back, body unread", async () => {
  const response = await post("no-such-model", { throwHttpErrors: false });
  equal(response.status, 404);
  equal(response.ok, false);
  equal((await response.json()).error.code, "model_not_found");
});

test("firstByte: no headers in time rejects with TimeoutError phase firstByte", async () => {
  const started = performance.now();
  const err = await rejects(post("slow", { timeout: { firstByte: 300 } }), af.TimeoutError);
  equal(err.phase, "firstByte");
  ok(elapsed(started) >= 280 && elapsed(started) < 2500, `took ${elapsed(started)} ms`);
});

test("idle: a stalled stream rejects the read with TimeoutError phase idle", async () => {
  const response = await post("stall", { timeout: { idle: 300 } }, { stream: true });
  const events = [];
  const err = await rejects(async () => {
    for await (const e of af.readEvents(response)) events.push(e);
  }, af.TimeoutError);
  equal(err.phase, "idle");
  ok(events.length >= 1, "the events before the stall arrive");
});

test("total: a deadline over the whole call, body included", async () => {
  const started = performance.now();
  const response = await post("endless", { timeout: { total: 600 } }, { stream: true });
  const err = await rejects(drain(response), af.TimeoutError);
  equal(err.phase, "total");
  ok(elapsed(started) >= 550 && elapsed(started) < 3000, `took ${elapsed(started)} ms`);
});

test("retry waits what Retry-After asks, then succeeds", async () => {
  const user = unique("retry");
  const started = performance.now();
  const response = await post("limited", { retry: { attempts: 2 } }, { user });
  equal(response.status, 200);
  ok(elapsed(started) >= 950, `Retry-After: 1 was not waited for (${elapsed(started)} ms)`);
  equal((await response.json()).choices[0].message.content, "Hello world");
});

test("without retry the 429 rejects at once with its retryAfter", async () => {
  const err = await rejects(post("limited", {}, { user: unique("no-retry") }), af.HTTPError);
  deepEqual([err.status, err.retryAfter], [429, 1]);
});

test("attempts counts every try, the first included", async () => {
  // "flaky" fails twice with 500, then answers: two tries are not enough, three are.
  const err = await rejects(post("flaky", { retry: { attempts: 2, backoff: 10 } }, { user: unique("flaky2") }), af.HTTPError);
  equal(err.status, 500);
  const response = await post("flaky", { retry: { attempts: 3, backoff: 10 } }, { user: unique("flaky3") });
  equal(response.status, 200);
});

test("a wait longer than maxServerWait rejects at once, saying so", async () => {
  const started = performance.now();
  const err = await rejects(post("limited-long", { retry: { attempts: 3, maxServerWait: 5000 }, throwHttpErrors: false }), af.HTTPError);
  equal(err.status, 429);
  equal(err.retryAfter, 30);
  match(err.message, /server asked to wait 30 s, more than maxServerWait=5000 ms/);
  ok(elapsed(started) < 1500, `took ${elapsed(started)} ms`);
});

test("abort while waiting for headers", async () => {
  const controller = new AbortController();
  setTimeout(() => controller.abort("user pressed stop"), 200);
  const started = performance.now();
  const err = await rejects(post("slow", { signal: controller.signal }), af.AbortError);
  equal(err.reason, "user pressed stop");
  ok(elapsed(started) < 1500, `took ${elapsed(started)} ms`);
});

test("abort while reading the body", async () => {
  const controller = new AbortController();
  const stream = af.readChat(await post("endless", { signal: controller.signal }, { stream: true }));
  let pieces = 0;
  const err = await rejects(async () => {
    for await (const _ of stream.textDeltas()) if (++pieces === 3) controller.abort("enough");
  }, af.AbortError);
  equal(err.reason, "enough");
  equal(pieces, 3);
});

test("abort between retries", async () => {
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 300);
  const started = performance.now();
  await rejects(post("limited", { retry: { attempts: 2 }, signal: controller.signal }, { user: unique("abort-retry") }), af.AbortError);
  ok(elapsed(started) < 900, `the Retry-After wait was not cut short (${elapsed(started)} ms)`);
});

test("a signal aborted before the call rejects at once", async () => {
  const err = await rejects(post("gpt", { signal: AbortSignal.abort("early") }), af.AbortError);
  equal(err.reason, "early");
});

test("an unreachable server rejects with NetworkError", async () => {
  const err = await rejects(af.aifetch("http://127.0.0.1:9/v1/models"), af.NetworkError);
  equal(err.phase, "send");
  match(err.message, /^GET http:\/\/127\.0\.0\.1:9\/v1\/models failed: /);
});

test("timeouts that are not reached change nothing", async () => {
  const timeout = { firstByte: 2000, idle: 2000, total: 5000 };
  const stream = af.readChat(await post("gpt", { timeout }, { stream: true }));
  equal((await stream.final()).choices[0].message.content, "Hello from fake-model");
});
