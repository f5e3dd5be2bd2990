import assert from "node:assert/strict";
import { test } from "node:test";
import { batched } from "./batch";

test("batched runs once for the calls made before its microtask, and again after", async () => {
  let runs = 0;
  const schedule = batched(() => runs++);
  schedule();
  schedule();
  schedule();
  assert.equal(runs, 0); // not yet: the changes of this turn are still arriving
  await Promise.resolve();
  assert.equal(runs, 1);
  schedule();
  await Promise.resolve();
  assert.equal(runs, 2);
});

test("a call made while it runs queues one more run", async () => {
  let runs = 0;
  const schedule = batched(() => {
    runs++;
    if (runs === 1) schedule();
  });
  schedule();
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(runs, 2);
});
