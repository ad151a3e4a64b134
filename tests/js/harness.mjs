// One set of test files for two runners: under `node --test` each test() is node:test's;
// in a browser page tests are collected and run by run() (tests/browser/test_module_chromium.py).
// The test environment (gateway URL, keys, where the module under test is) comes from
// AIFETCH_TEST_* variables in Node and from globalThis.AIFETCH_TEST in a page.

const inNode = typeof process !== "undefined" && Boolean(process.versions?.node);
const nodeTest = inNode ? (await import("node:test")).test : null;
const collected = [];

export const env = inNode
  ? {
      gateway: process.env.AIFETCH_TEST_GATEWAY,
      key: process.env.AIFETCH_TEST_KEY,
      narrowKey: process.env.AIFETCH_TEST_NARROW_KEY,
      module: process.env.AIFETCH_TEST_MODULE ?? new URL("../../src/aifetch/js/aifetch.js", import.meta.url).href,
      runtime: "node",
    }
  : { ...globalThis.AIFETCH_TEST, runtime: "browser" };

// The module under test: the gateway's /aifetch.js in a page, the source file in Node.
export const af = await import(env.module);

const TEST_TIMEOUT = 15_000;

export function test(name, fn) {
  if (nodeTest) nodeTest(name, { timeout: TEST_TIMEOUT }, fn);
  else collected.push({ name, fn });
}

/** Run the collected tests one by one: [{name, ok, error, ms}]. */
export async function run() {
  const results = [];
  for (const { name, fn } of collected) {
    const started = performance.now();
    let timer;
    try {
      await Promise.race([
        fn(),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${TEST_TIMEOUT} ms`)), TEST_TIMEOUT))),
      ]);
      results.push({ name, ok: true, ms: performance.now() - started });
    } catch (err) {
      results.push({ name, ok: false, error: `${err?.name}: ${err?.message}\n${err?.stack ?? ""}`, ms: performance.now() - started });
    } finally {
      clearTimeout(timer);
    }
  }
  return results;
}

/** A JSON file from tests/vectors. */
export async function vectors(name) {
  const url = new URL(`../vectors/${name}`, import.meta.url);
  if (inNode) {
    const { readFile } = await import("node:fs/promises");
    return JSON.parse(await readFile(url, "utf-8"));
  }
  return (await fetch(url)).json();
}

/** A unique value per call, so scripted upstream behaviour keyed on it starts fresh. */
export const unique = (prefix) => `${prefix}-${env.runtime}-${Date.now()}-${Math.random().toString(36).slice(2)}`;

/** A Response whose body is the given byte chunks, as a stream would deliver them. */
export function streamed(chunks, headers = { "content-type": "text/event-stream" }) {
  const queue = [...chunks];
  const body = new ReadableStream({
    pull(controller) {
      if (queue.length) controller.enqueue(queue.shift());
      else controller.close();
    },
  });
  return new Response(body, { headers });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
