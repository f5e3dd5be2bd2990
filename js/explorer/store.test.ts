// Unit tests of the Explorer's page cache and its one door to the kernel, against a fake host model.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "../shared/client";
import { Events } from "../shared/events";
import { PanelModel } from "./panel-model";
import { Hub, Store } from "./store";

class Host extends Events {
  sent: any[] = [];
  state: Record<string, unknown> = { selected_token: 2, panel_states: {} };
  get(key: string): any {
    return this.state[key];
  }
  set(key: string, value: unknown): void {
    this.state[key] = value;
    this.emit(`change:${key}`);
  }
  save_changes(): void {}
  send(content: any): void {
    this.sent.push(content);
  }
  kernel(msg: any, buffers: DataView[] = []): void {
    this.emit("msg:custom", msg, buffers);
  }
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

function setup(budget = 1e6) {
  const host = new Host();
  const hub = new Hub(host, () => ["tokens", "lens"], budget);
  const client = (panel: string) => new Client(new PanelModel(host, panel, ["selected_token"], hub));
  return { host, hub, client };
}

test("the store keeps the most recently used answers within its budget and says what it forgot", () => {
  const store = new Store(100);
  const answer = (bytes: number) => ({ messages: [], bytes });
  store.put("a", answer(40));
  store.put("b", answer(40));
  assert.ok(store.take("a")); // a is now the most recent
  store.put("c", answer(40));
  assert.deepEqual([store.has("a"), store.has("b"), store.has("c")], [true, false, true]);
  assert.deepEqual(store.forgotten, ["b"]);
  store.put("huge", answer(101));
  assert.equal(store.has("huge"), false);
});

test("one click's misses leave as one batch in on-screen order; the answers reach each panel and fill the store", async () => {
  const { host, hub, client } = setup();
  const lens = client("lens");
  const tokens = client("tokens");
  const a = lens.request("cell", "cell", { layer: 1, position: 2, k: 3 });
  const b = tokens.request("predictions", "predictions", { position: 2, k: 5 });
  await tick();
  assert.equal(host.sent.length, 1);
  const batch = host.sent[0];
  assert.equal(batch.type, "batch");
  assert.deepEqual(batch.requests.map((r: any) => r.panel), ["tokens", "lens"]);
  host.kernel({ type: "ack", batch: batch.batch });
  const [rt, rl] = batch.requests;
  host.kernel({ type: "response", id: rt.id, what: "predictions", panel: "tokens", position: 2 });
  host.kernel({ type: "response", id: rl.id, what: "cell", panel: "lens", layer: 1 });
  assert.equal((await b)!.msg["position"], 2);
  assert.equal((await a)!.msg["layer"], 1);
  // The same request again: answered in the page, no message.
  const again = await tokens.request("predictions", "predictions", { position: 2, k: 5 });
  assert.equal(again!.msg["position"], 2);
  await tick();
  assert.equal(host.sent.length, 1);
  assert.equal(hub.counts.hits, 1);
  hub.dispose();
});

test("while a batch has no word back, newer clicks wait in the page and the stale ones never leave", async () => {
  const { host, hub, client } = setup();
  const tokens = client("tokens");
  const first = tokens.request("predictions", "predictions", { position: 1, k: 5 });
  await tick();
  assert.equal(host.sent.length, 1); // the kernel is busy: no ack
  const second = tokens.request("predictions", "predictions", { position: 2, k: 5 });
  await tick();
  const third = tokens.request("predictions", "predictions", { position: 3, k: 5 });
  await tick();
  assert.equal(host.sent.length, 1);
  assert.equal(await first, null);
  assert.equal(await second, null);
  host.kernel({ type: "ack", batch: host.sent[0].batch });
  assert.equal(host.sent.length, 2);
  const batch = host.sent[1];
  assert.deepEqual(batch.requests.map((r: any) => r.position), [3]); // the second never left the page
  assert.deepEqual(batch.drop, [host.sent[0].requests[0].id]); // the first did: the kernel drops it
  host.kernel({ type: "response", id: batch.requests[0].id, what: "predictions", panel: "tokens", position: 3 });
  assert.equal((await third)!.msg["position"], 3);
  hub.dispose();
});

test("prefetched answers are filed by request key and answer a later click with no message", async () => {
  const { host, hub, client } = setup();
  const tokens = client("tokens");
  hub.prefetchSoon(); // as the Explorer does once its panels are mounted
  await tick(300); // idle: the hub asks for the prefetch around the selection
  const ask = host.sent.find((m) => m.type === "prefetch");
  assert.deepEqual([ask.position, ask.panels, ask.budget], [2, ["tokens", "lens"], 1e6]);
  const probs = new DataView(new Float32Array([0.5]).buffer);
  host.kernel(
    {
      type: "stored",
      done: true,
      entries: [
        {
          key: '{"k":5,"panel":"tokens","position":4,"what":"predictions"}',
          messages: [{ content: { type: "response", what: "predictions", panel: "tokens", position: 4, arrays: [{ name: "probs", dtype: "float32", shape: [1], buffer: 0 }] }, buffers: [0] }],
        },
      ],
    },
    [probs],
  );
  assert.equal(hub.counts.prefetchDone, true);
  const n = host.sent.length;
  const r = await tokens.request("predictions", "predictions", { position: 4, k: 5 });
  assert.equal(r!.msg["position"], 4);
  assert.equal((r!.arrays["probs"]!.data as Float32Array)[0], 0.5);
  await tick(300);
  assert.equal(host.sent.length, n); // near the last centre: nothing is sent at all
  hub.dispose();
});
