// The latest-only fetcher: never a backlog, never a stale value shown, cached answers.
import assert from "node:assert/strict";
import { test } from "node:test";
import { LatestFetcher, LruCache } from "./latest";

interface Call {
  key: string;
  resolve: (v: string | null) => void;
  reject: (e: Error) => void;
}

function setup() {
  const calls: Call[] = [];
  const settled: string[] = [];
  const fetcher = new LatestFetcher<string>(
    (key) => new Promise((resolve, reject) => calls.push({ key, resolve, reject })),
    (key) => settled.push(key),
    new LruCache<string>(10),
  );
  return { calls, settled, fetcher };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

test("one request at a time; only the last wish is asked next", async () => {
  const { calls, settled, fetcher } = setup();
  assert.equal(fetcher.want("1"), undefined);
  fetcher.want("2");
  fetcher.want("3");
  fetcher.want("4");
  assert.deepEqual(
    calls.map((c) => c.key),
    ["1"],
  );
  calls[0]!.resolve("one");
  await tick();
  // "1" is cached but not wanted; "4" is asked, never "2" or "3".
  assert.deepEqual(
    calls.map((c) => c.key),
    ["1", "4"],
  );
  assert.deepEqual(settled, ["1"]);
  calls[1]!.resolve("four");
  await tick();
  assert.equal(fetcher.want("4"), "four");
  assert.equal(fetcher.want("1"), "one"); // cached: instant, no request
  assert.equal(calls.length, 2);
});

test("errors are remembered per key and retried when asked anew", async () => {
  const { calls, fetcher } = setup();
  fetcher.want("a");
  calls[0]!.reject(new Error("boom"));
  await tick();
  assert.equal(fetcher.error("a")?.message, "boom");
  fetcher.want("a"); // the same wish: no retry loop
  assert.equal(calls.length, 1);
  fetcher.retry("a");
  assert.equal(calls.length, 2);
  calls[1]!.reject(new Error("again"));
  await tick();
  fetcher.want("b");
  calls[2]!.resolve("B");
  await tick();
  fetcher.want("a"); // wanted anew after another key: retried
  assert.equal(calls.length, 4);
});

test("a stale (null) answer is not asked again in a loop", async () => {
  const { calls, fetcher } = setup();
  fetcher.want("x");
  calls[0]!.resolve(null);
  await tick();
  await tick();
  assert.equal(calls.length, 1);
});

test("reset drops answers on their way", async () => {
  const { calls, settled, fetcher } = setup();
  fetcher.want("x");
  fetcher.reset();
  calls[0]!.resolve("old text");
  await tick();
  assert.deepEqual(settled, []);
  assert.equal(fetcher.cache.size, 0);
  fetcher.want("x");
  assert.equal(calls.length, 2);
});

test("the LRU cache evicts the least recently used past its budget", () => {
  const cache = new LruCache<number>(10, (v) => v);
  cache.set("a", 4);
  cache.set("b", 4);
  cache.get("a");
  cache.set("c", 4); // 12 > 10: evict b (a was used)
  assert.equal(cache.has("b"), false);
  assert.equal(cache.get("a"), 4);
  cache.set("huge", 50); // bigger than the budget: kept alone
  assert.equal(cache.size, 1);
  assert.equal(cache.get("huge"), 50);
});
