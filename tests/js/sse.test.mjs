// SSEDecoder and readEvents: the shared vectors (tests/vectors/sse.json) at the chunkings
// that file names, and a live POST stream from the gateway re-read at many chunkings.
import { deepEqual, equal, ok, rejects } from "./assert.mjs";
import { af, env, streamed, test, vectors } from "./harness.mjs";

const doc = await vectors("sse.json");
const utf8 = new TextEncoder();

function inputBytes(vector) {
  const parts = vector.input.map((p) =>
    typeof p === "string" ? utf8.encode(p) : Uint8Array.from(p.hex.match(/../g) ?? [], (h) => parseInt(h, 16)),
  );
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const cut = (bytes, offsets) => [0, ...offsets].map((a, i) => bytes.subarray(a, [...offsets, bytes.length][i]));

// The rules named in the file's "chunkings", in the same order as tests/test_sse_vectors.py.
function* chunkings(vector) {
  const bytes = inputBytes(vector);
  const ones = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
  yield ["whole", [bytes]];
  yield ["bytes", ones];
  yield ["bytes-and-empty", ones.flatMap((b) => [b, new Uint8Array(0)])];
  for (let i = 0; i <= bytes.length; i++) yield [`halves@${i}`, cut(bytes, [i])];
  for (const size of [2, 3, 5, 7]) {
    const reads = [];
    for (let i = 0; i < bytes.length; i += size) reads.push(bytes.subarray(i, i + size));
    yield [`sizes:${size}`, reads];
  }
  for (const offsets of vector.splits ?? []) yield [`splits:${offsets}`, cut(bytes, offsets)];
}

const plain = (e) => ({ event: e.event, data: e.data, id: e.id, retry: e.retry ?? null });

function decode(vector, reads) {
  const comments = [];
  const options = { onComment: (c) => comments.push(c) };
  if (vector.max_event_size) options.maxEventSize = vector.max_event_size;
  const decoder = new af.SSEDecoder(options);
  const events = reads.flatMap((read) => decoder.feed(read).map(plain));
  const outcome = { events, last_event_id: decoder.lastEventId, retry: decoder.retry ?? null, comments };
  decoder.close();
  return outcome;
}

test("the vector file names the chunking rules this runner applies", () => {
  deepEqual(Object.keys(doc.chunkings).sort(), ["bytes", "bytes-and-empty", "halves", "sizes", "splits", "whole"]);
  ok(doc.vectors.length >= 60, "expected the full vector set");
});

for (const vector of doc.vectors) {
  test(`vector: ${vector.name}`, async () => {
    for (const [label, reads] of chunkings(vector)) {
      if (vector.error) {
        equal(vector.error, "EventTooLargeError");
        await rejects(async () => decode(vector, reads), af.EventTooLargeError, label);
        continue;
      }
      const outcome = decode(vector, reads);
      if (!vector.comments) delete outcome.comments;
      const expected = { events: vector.events, last_event_id: vector.last_event_id, retry: vector.retry };
      if (vector.comments) expected.comments = vector.comments;
      deepEqual(outcome, expected, `${vector.name} (${label})`);
    }
    if (vector.error) return;
    // readEvents over a Response gives the same events, whole and one byte per read.
    for (const reads of [[inputBytes(vector)], Array.from(inputBytes(vector), (b) => Uint8Array.of(b))]) {
      const options = vector.max_event_size ? { maxEventSize: vector.max_event_size } : {};
      const got = [];
      for await (const event of af.readEvents(streamed(reads), options)) got.push(plain(event));
      deepEqual(got, vector.events, `${vector.name} via readEvents`);
    }
  });
}

test("a long line in small reads is decoded in linear time", () => {
  const decoder = new af.SSEDecoder();
  const read = utf8.encode("x".repeat(1024));
  const started = performance.now();
  decoder.feed(utf8.encode("data: "));
  for (let i = 0; i < 8 * 1024; i++) decoder.feed(read);
  const [event] = decoder.feed(utf8.encode("\r\r"));
  equal(event.data.length, 8 * 1024 * 1024);
  ok(performance.now() - started < 2000, "8 MiB in 1 KiB reads took more than 2 s");
});

test("readEvents rejects a non-2xx response with HTTPError and its body parsed", async () => {
  const response = new Response('{"error":{"message":"slow down","type":"rate_limit","code":"rl"}}', {
    status: 429,
    headers: { "retry-after": "3", "x-request-id": "req_1" },
  });
  const err = await rejects(af.readEvents(response).next(), af.HTTPError);
  equal(err.status, 429);
  equal(err.providerMessage, "slow down");
  equal(err.code, "rl");
  equal(err.retryAfter, 3);
  equal(err.requestId, "req_1");
  equal(err.message, "429 Too Many Requests — slow down (type=rate_limit, code=rl)");
});

test("readEvents rejects a 2xx that is not an event stream with ContentTypeError", async () => {
  const response = new Response('{"object":"chat.completion"}', { headers: { "content-type": "application/json" } });
  const err = await rejects(af.readEvents(response).next(), af.ContentTypeError);
  ok(err.message.includes("application/json"), err.message);
});

async function liveStreamBytes() {
  const response = await af.aifetch(`${env.gateway}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${env.key}` },
    json: { model: "gpt", stream: true, messages: [{ role: "user", content: "hi" }] },
  });
  return response;
}

test("a live POST stream reads the same at every chunking", async () => {
  const live = [];
  for await (const event of af.readEvents(await liveStreamBytes())) live.push(plain(event));
  ok(live.length >= 4, "expected a role chunk, content, finish and [DONE]");
  equal(live.at(-1).data, "[DONE]");
  const bytes = new Uint8Array(await (await liveStreamBytes()).arrayBuffer());
  const sizes = [1, 2, 3, 5, 7, 11, 64, 1000];
  const seeded = (() => {
    let s = 7;
    return () => (s = (s * 48271) % 2147483647) / 2147483647;
  })();
  const randomCuts = Array.from({ length: 20 }, () => {
    const reads = [];
    for (let i = 0; i < bytes.length; ) {
      const n = 1 + Math.floor(seeded() * 40);
      reads.push(bytes.subarray(i, i + n));
      i += n;
    }
    return reads;
  });
  const bySize = sizes.map((n) => Array.from({ length: Math.ceil(bytes.length / n) }, (_, i) => bytes.subarray(i * n, i * n + n)));
  for (const reads of [...bySize, ...randomCuts]) {
    const got = [];
    for await (const event of af.readEvents(streamed(reads))) got.push(plain(event));
    deepEqual(got, live, `at ${reads.length} reads`);
  }
});

test("comments reach onComment and never become events", async () => {
  const seen = [];
  const events = [];
  const body = [utf8.encode(": ping\n\ndata: x\n: mid\n\n")];
  for await (const e of af.readEvents(streamed(body), { onComment: (c) => seen.push(c) })) events.push(e.data);
  deepEqual(seen, ["ping", "mid"]);
  deepEqual(events, ["x"]);
});
