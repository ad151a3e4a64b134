"""aifetch.js: its size, and its SSE parse rate in Chromium beside eventsource-parser.

Run:  PYTHONPATH=src:. .venv/bin/python bench/bench_js.py [--events N] [--rounds R] [--passes P]
Once: (cd bench && npm install)   # eventsource-parser, pinned in bench/package.json

The stream is bench_sse.py's: N OpenAI ``chat.completion.chunk`` events and ``data: [DONE]``,
cut into the same seeded 1-8 KiB reads. One page (headless Chromium, Debian's build, served
from 127.0.0.1) loads aifetch.js and eventsource-parser from local files, checks that both
give the same N+1 events, then times each way of reading in turn, round after round (the order
turning each round), so load changes hit them alike; each timing covers P passes over the stream (a page's clock is
coarse) and the best round of each is reported.

* core: aifetch.js ``SSEDecoder.feed(bytes)`` vs eventsource-parser's ``createParser``
  fed ``TextDecoder.decode(bytes, {stream: true})``, the way its README feeds it.
* stream: ``readEvents(response)`` (async iteration) vs ``response.body`` piped through
  ``TextDecoderStream`` and ``EventSourceParserStream`` (its own stream variant).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.support.static_server import StaticServer
from tests.support.system import ensure_command

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from bench_sse import cut_reads, openai_stream  # noqa: E402

MODULE = ROOT / "src" / "aifetch" / "js" / "aifetch.js"
PEER = BENCH / "node_modules" / "eventsource-parser"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PAGE = """<!doctype html><meta charset="utf-8"><title>bench</title><p>bench_js</p>"""

SCRIPT = r"""
import { SSEDecoder, readEvents } from "./aifetch.js";
import { createParser } from "./esp/index.js";
import { EventSourceParserStream } from "./esp/stream.js";

const bytes = new Uint8Array(await (await fetch("./stream.bin")).arrayBuffer());
const sizes = await (await fetch("./reads.json")).json();
const reads = [];
for (let at = 0, i = 0; i < sizes.length; at += sizes[i++]) reads.push(bytes.subarray(at, at + sizes[i]));
const response = () =>
  new Response(
    new ReadableStream({
      start(controller) {
        for (const read of reads) controller.enqueue(read);
        controller.close();
      },
    }),
    { headers: { "content-type": "text/event-stream" } },
  );

const ways = {
  "aifetch.js SSEDecoder": async (keep) => {
    const decoder = new SSEDecoder();
    let n = 0;
    for (const read of reads) for (const e of decoder.feed(read)) keep ? keep.push(e.data) : n++;
    return keep ? keep.length : n;
  },
  "eventsource-parser createParser": async (keep) => {
    let n = 0;
    const parser = createParser({ onEvent: (e) => (keep ? keep.push(e.data) : n++) });
    const text = new TextDecoder();
    for (const read of reads) parser.feed(text.decode(read, { stream: true }));
    return keep ? keep.length : n;
  },
  "aifetch.js readEvents": async (keep) => {
    let n = 0;
    for await (const e of readEvents(response())) keep ? keep.push(e.data) : n++;
    return keep ? keep.length : n;
  },
  "eventsource-parser EventSourceParserStream": async (keep) => {
    let n = 0;
    const reader = response().body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream()).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      keep ? keep.push(value.data) : n++;
    }
    return keep ? keep.length : n;
  },
};

window.runBench = async (rounds, passes) => {
  const seen = {};
  for (const [name, way] of Object.entries(ways)) {
    const events = [];
    await way(events);
    seen[name] = events;
  }
  const [first, ...others] = Object.values(seen);
  for (const [i, other] of others.entries()) {
    if (other.length !== first.length || other.some((d, k) => d !== first[k])) {
      throw new Error(`${Object.keys(seen)[i + 1]} disagrees with ${Object.keys(seen)[0]}`);
    }
  }
  const best = Object.fromEntries(Object.keys(ways).map((name) => [name, Infinity]));
  const order = Object.entries(ways);
  for (let round = 0; round < rounds; round++) {
    // The order turns each round, so the garbage one way leaves is not always collected
    // during the same other way's timing.
    for (const [name, way] of [...order.slice(round % order.length), ...order.slice(0, round % order.length)]) {
      // Several passes per timing: a page's clock is coarse (100 µs without isolation).
      const started = performance.now();
      for (let pass = 0; pass < passes; pass++) {
        const n = await way(null);
        if (n !== first.length) throw new Error(`${name} counted ${n} events`);
      }
      best[name] = Math.min(best[name], (performance.now() - started) / passes);
    }
  }
  return { events: first.length, best };
};
window.benchReady = true;
"""


def sizes() -> list[tuple[str, int, int]]:
    rows = [("aifetch.js", MODULE.read_bytes())]
    dist = PEER / "dist"
    peer = b"".join((dist / n).read_bytes() for n in ("index.js", "parse.js", "errors.js"))
    rows.append(("eventsource-parser (index, parse, errors)", peer))
    return [(name, len(data), len(gzip.compress(data, 9))) for name, data in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--passes", type=int, default=5, help="passes over the stream per timing")
    args = parser.parse_args()
    if not (PEER / "package.json").exists():
        sys.exit("eventsource-parser is missing: run (cd bench && npm install) first")
    version = json.loads((PEER / "package.json").read_text())["version"]
    stream = openai_stream(args.events, args.seed)
    reads = cut_reads(stream, args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        (site / "aifetch.js").symlink_to(MODULE)
        (site / "esp").symlink_to(PEER / "dist", target_is_directory=True)
        (site / "stream.bin").write_bytes(stream)
        (site / "reads.json").write_text(json.dumps([len(r) for r in reads]))
        (site / "index.html").write_text(PAGE)
        (site / "bench.mjs").write_text(SCRIPT)
        chromium = ensure_command("chromium", "chromium")
        with StaticServer(site) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
            page = browser.new_page()
            page.goto(f"{server.url}/index.html")
            page.add_script_tag(url=f"{server.url}/bench.mjs", type="module")
            page.wait_for_function("() => window.benchReady === true", timeout=30_000)
            result = page.evaluate(
                "([rounds, passes]) => window.runBench(rounds, passes)", [args.rounds, args.passes]
            )
            agent = page.evaluate("() => navigator.userAgent")
            browser.close()

    print(f"Chromium: {agent}")
    print(f"stream: {len(stream):,} bytes, {len(reads):,} reads, {result['events']:,} events")
    print(f"\n{'size':<44} {'raw':>9} {'gzip -9':>9}")
    for name, raw, packed in sizes():
        print(f"{name:<44} {raw:>9,} {packed:>9,}")
    title = f"SSE parse, best of {args.rounds} rounds of {args.passes} passes"
    print(f"\n{title:<52} {'events/s':>12} {'ms/pass':>8}")
    best = result["best"]
    for name, ms in best.items():
        label = name.replace("eventsource-parser", f"eventsource-parser {version}")
        print(f"{label:<52} {result['events'] / ms * 1000:>12,.0f} {ms:>8.1f}")
    core = best["eventsource-parser createParser"] / best["aifetch.js SSEDecoder"]
    full = best["eventsource-parser EventSourceParserStream"] / best["aifetch.js readEvents"]
    print(f"\naifetch.js vs eventsource-parser: core {core:.2f}x, from a Response {full:.2f}x")


if __name__ == "__main__":
    main()
