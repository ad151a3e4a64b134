// ChatAccumulator and readChat: the shared chat cases, the accumulation rules, stream errors,
// and live streams through the gateway.
import { deepEqual, equal, ok, rejects } from "./assert.mjs";
import { af, env, streamed, test, vectors } from "./harness.mjs";

const { cases } = await vectors("chat.json");
const utf8 = new TextEncoder();
const sse = (chunks, { done = true } = {}) =>
  utf8.encode(chunks.map((c) => `data: ${typeof c === "string" ? c : JSON.stringify(c)}\n\n`).join("") + (done ? "data: [DONE]\n\n" : ""));

function accumulate(chunks) {
  const acc = new af.ChatAccumulator();
  for (const chunk of chunks) acc.add(chunk);
  return acc.final();
}

const choice = (delta, extra = {}) => ({ index: 0, delta, ...extra });
const chunk = (...choices) => ({ choices });
const tool = (index, id, name, args) => ({ tool_calls: [{ index, id, function: { name, arguments: args } }] });

// The expected answers hold only the usage fields the Python types model; JS hands on the
// provider's usage object whole (DeepSeek's prompt_cache_hit_tokens, say), so extra usage
// members are allowed and the modelled ones must match.
function withExpectedUsage(final, expected) {
  if (final.usage && expected.usage) {
    for (const key of Object.keys(final.usage)) if (!(key in expected.usage)) delete final.usage[key];
  }
  return final;
}

for (const c of cases) {
  test(`chat case: ${c.name}`, async () => {
    deepEqual(withExpectedUsage(accumulate(c.chunks), c.expected), c.expected, "accumulator");
    // The same answer through readChat, at one byte per read.
    const bytes = sse(c.chunks);
    const stream = af.readChat(streamed(Array.from(bytes, (b) => Uint8Array.of(b))));
    const seen = [];
    for await (const got of stream) seen.push(got);
    equal(seen.length, c.chunks.length);
    deepEqual(withExpectedUsage(await stream.final(), c.expected), c.expected, "readChat");
  });
}

test("a piece without index or id continues the last call", () => {
  const final = accumulate([
    chunk(choice(tool(undefined, "a", "f", '{"x"'))),
    chunk(choice(tool(undefined, undefined, undefined, ": 1}"))),
    chunk(choice(tool(undefined, "b", "g", "{}"))),
    chunk(choice(tool(undefined, undefined, undefined, " "))),
  ]);
  deepEqual(final.choices[0].message.tool_calls, [
    { id: "a", type: "function", function: { name: "f", arguments: '{"x": 1}' } },
    { id: "b", type: "function", function: { name: "g", arguments: "{} " } },
  ]);
});

test("a known index with a new id starts a new call", () => {
  const final = accumulate([chunk(choice(tool(0, "a", "f", "1"))), chunk(choice(tool(0, "b", "g", "2")))]);
  deepEqual(
    final.choices[0].message.tool_calls.map((t) => [t.id, t.function.name, t.function.arguments]),
    [["a", "f", "1"], ["b", "g", "2"]],
  );
});

test("role once, last finish_reason, first header fields, last usage", () => {
  const acc = new af.ChatAccumulator();
  acc.add({ id: "", created: 0, model: "", choices: [choice({ role: "assistant", content: "a" }, { finish_reason: "length" })] });
  acc.add({ id: "one", created: 5, model: "m1", usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 }, choices: [choice({ role: "assistant", content: "b" }, { finish_reason: "stop" })] });
  acc.add({ id: "two", created: 6, model: "m2", system_fingerprint: "fp", usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }, choices: [choice({}, { finish_reason: null })] });
  const final = acc.final();
  deepEqual([final.id, final.created, final.model, final.system_fingerprint], ["one", 5, "m1", "fp"]);
  deepEqual([final.choices[0].message.role, final.choices[0].message.content, final.choices[0].finish_reason], ["assistant", "ab", "stop"]);
  equal(final.usage.completion_tokens, 2);
});

test("an empty answer keeps content '' and final() is a new object each call", () => {
  const acc = new af.ChatAccumulator();
  acc.add(chunk(choice({ role: "assistant", content: "" })));
  const first = acc.final();
  equal(first.choices[0].message.content, "");
  acc.add(chunk(choice({ content: "more" })));
  equal(first.choices[0].message.content, "", "an earlier result must not change");
  equal(acc.final().choices[0].message.content, "more");
});

test("many small pieces join in order", () => {
  const pieces = Array.from({ length: 20000 }, (_, i) => `${i},`);
  equal(accumulate(pieces.map((p) => chunk(choice({ content: p })))).choices[0].message.content, pieces.join(""));
});

test("an error payload in the stream rejects with StreamError carrying the provider's fields", async () => {
  const body = sse([chunk(choice({ content: "Hi" })), { error: { message: "The model failed", type: "server_error", code: "boom" } }], { done: false });
  const stream = af.readChat(streamed([body]));
  const seen = [];
  const err = await rejects(async () => {
    for await (const c of stream) seen.push(c);
  }, af.StreamError);
  equal(seen.length, 1, "the chunk before the error is delivered first");
  deepEqual([err.providerMessage, err.type, err.code], ["The model failed", "server_error", "boom"]);
  ok(err.message.includes("The model failed"), err.message);
  await rejects(stream.final(), af.StreamError, "final() gives the same error again");
});

test("an SSE error event rejects with StreamError", async () => {
  const body = utf8.encode(`data: ${JSON.stringify(chunk(choice({ content: "Hi" })))}\n\nevent: error\ndata: {"error":{"message":"upstream reset","type":"upstream_error","code":"upstream_reset"}}\n\n`);
  const err = await rejects(af.readChat(streamed([body])).final(), af.StreamError);
  equal(err.code, "upstream_reset");
});

test("a stream that ends without [DONE] rejects with IncompleteStreamError", async () => {
  const stream = af.readChat(streamed([sse([chunk(choice({ content: "Hel" }))], { done: false })]));
  const texts = [];
  const err = await rejects(async () => {
    for await (const t of stream.textDeltas()) texts.push(t);
  }, af.IncompleteStreamError);
  deepEqual(texts, ["Hel"]);
  ok(err.message.includes("1 chunks"), err.message);
});

test("leaving the loop early makes final() reject: a cut answer never looks complete", async () => {
  const stream = af.readChat(streamed([sse([chunk(choice({ content: "a" })), chunk(choice({ content: "b" }))])]));
  for await (const _ of stream) break;
  await rejects(stream.final(), af.IncompleteStreamError);
});

test("an event that is not a chunk rejects with InvalidChunkError", async () => {
  const err = await rejects(af.readChat(streamed([sse(['{"id": "x", "choices": ['])])).final(), af.InvalidChunkError);
  ok(err.message.startsWith("event 1 of the stream"), err.message);
});

test("keep-alive data, comments and vendor events are skipped", async () => {
  const body = utf8.encode(`: ping\n\ndata:\n\nevent: ping\ndata: {}\n\ndata: ${JSON.stringify(chunk(choice({ content: "ok" })))}\n\ndata: [DONE]\n\n`);
  equal((await af.readChat(streamed([body])).final()).choices[0].message.content, "ok");
});

const auth = () => ({ authorization: `Bearer ${env.key}` });
const chat = (model, extra = {}) =>
  af.aifetch(`${env.gateway}/v1/chat/completions`, {
    method: "POST",
    headers: auth(),
    json: { model, stream: true, messages: [{ role: "user", content: "hi" }], ...extra },
  });

test("a live stream through the gateway accumulates content and usage", async () => {
  const stream = af.readChat(await chat("gpt", { stream_options: { include_usage: true } }));
  let text = "";
  for await (const t of stream.textDeltas()) text += t;
  const final = await stream.final();
  equal(text, "Hello from fake-model");
  equal(final.choices[0].message.content, text);
  equal(final.choices[0].finish_reason, "stop");
  ok(final.usage && final.usage.total_tokens > 0, "usage was asked for");
});

test("a live stream with tool calls accumulates them by index", async () => {
  const final = await af.readChat(await chat("tools")).final();
  const calls = final.choices[0].message.tool_calls;
  deepEqual(calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]), [
    ["get_weather", { city: "Paris" }],
    ["get_time", { tz: "Europe/Paris" }],
  ]);
  equal(final.choices[0].finish_reason, "tool_calls");
  equal(final.choices[0].message.content, "Hello world");
});

test("an upstream error mid-answer reaches the page as StreamError after the text so far", async () => {
  const stream = af.readChat(await chat("midstream-error"));
  let text = "";
  const err = await rejects(async () => {
    for await (const t of stream.textDeltas()) text += t;
  }, af.StreamError);
  equal(text, "Hello");
  ok(err.providerMessage, "the gateway's error event has a message");
});

test("an upstream cut mid-answer never looks complete", async () => {
  const stream = af.readChat(await chat("cut"));
  const err = await rejects(stream.final(), af.AifetchError);
  ok(err instanceof af.StreamError || err instanceof af.IncompleteStreamError, `${err.name}: ${err.message}`);
  ok(stream.count >= 1, "some chunks arrived before the cut");
  equal(stream.done, false);
});
