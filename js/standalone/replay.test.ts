import assert from "node:assert/strict";
import { test } from "node:test";
import { replayKey, ReplayModel } from "./replay";

test("replayKey leaves out the id and sorts the parameters, as Python's json.dumps(sort_keys=True)", () => {
  assert.equal(replayKey({ type: "request", id: 7, what: "predictions", position: 3, k: 5 }), '{"k":5,"position":3,"what":"predictions"}');
  assert.equal(replayKey({ what: "cell", position: 1, layer: 2, k: 10 }), '{"k":10,"layer":2,"position":1,"what":"cell"}');
});

test("a recorded request is answered with the request's id and its buffers; set fires change events", async () => {
  const key = replayKey({ what: "predictions", position: 1, k: 2 });
  const recorded = { [key]: { messages: [{ content: { type: "response", what: "predictions" }, buffers: [[2, 3]] as [number, number][] }] } };
  const model = new ReplayModel({ selected_token: -1 }, recorded, new Uint8Array([9, 9, 1, 2, 3, 9]));
  const seen: unknown[] = [];
  model.on("change:selected_token", () => seen.push(model.get("selected_token")));
  model.set("selected_token", 1);
  assert.deepEqual(seen, [1]);
  const answer = new Promise<[any, DataView[]]>((resolve) => model.on("msg:custom", (msg, buffers) => resolve([msg, buffers])));
  model.send({ type: "request", id: 42, what: "predictions", position: 1, k: 2 });
  const [msg, buffers] = await answer;
  assert.equal(msg.id, 42);
  assert.equal(msg.type, "response");
  assert.deepEqual(Array.from(new Uint8Array(buffers[0]!.buffer, buffers[0]!.byteOffset, buffers[0]!.byteLength)), [1, 2, 3]);
});

test("a request nobody recorded gets an error naming it", async () => {
  const model = new ReplayModel({}, {}, new Uint8Array());
  const answer = new Promise<any>((resolve) => model.on("msg:custom", (msg) => resolve(msg)));
  model.send({ type: "request", id: 3, what: "pattern", layer: 2 });
  const msg = await answer;
  assert.equal(msg.type, "error");
  assert.equal(msg.id, 3);
  assert.match(msg.message, /not recorded in this file: pattern/);
});

test("an Explorer panel's request is answered with its panel tag, recorded or not", async () => {
  const model = new ReplayModel({}, {}, new Uint8Array());
  const answer = new Promise<any>((resolve) => model.on("msg:custom", (msg) => resolve(msg)));
  model.send({ type: "request", id: 5, what: "overview", size: 32, panel: "attention" });
  const msg = await answer;
  assert.equal(msg.panel, "attention");
  assert.match(msg.message, /not recorded in this file: overview/);
});
