// Unit tests of the request client against a fake anywidget model.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Client, type MessageModel } from "./client";

type Listener = (msg: any, buffers: DataView[]) => void;

class FakeModel implements MessageModel {
  sent: any[] = [];
  sentBuffers: (ArrayBuffer[] | ArrayBufferView[] | undefined)[] = [];
  listeners: Listener[] = [];
  send(content: any, _callbacks?: any, buffers?: ArrayBuffer[] | ArrayBufferView[]): void {
    this.sent.push(content);
    this.sentBuffers.push(buffers);
  }
  on(_event: "msg:custom", callback: Listener): void {
    this.listeners.push(callback);
  }
  off(_event?: "msg:custom" | null, callback?: ((...args: any[]) => void) | null): void {
    this.listeners = this.listeners.filter((l) => l !== callback);
  }
  /** The kernel speaks: every view's listener hears it. */
  emit(msg: any, buffers: DataView[] = []): void {
    for (const l of [...this.listeners]) l(msg, buffers);
  }
  last(): any {
    return this.sent[this.sent.length - 1];
  }
}

function f32(values: number[]): DataView {
  const view = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((v, i) => view.setFloat32(4 * i, v, true));
  return view;
}
function i32(values: number[]): DataView {
  const view = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((v, i) => view.setInt32(4 * i, v, true));
  return view;
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("Client", () => {
  test("sends a request with an increasing id and resolves with decoded arrays", async () => {
    const model = new FakeModel();
    const client = new Client(model);
    const p = client.request("predictions", "predictions", { position: 3, k: 2 });
    const sent = model.last();
    assert.equal(sent.type, "request");
    assert.equal(sent.what, "predictions");
    assert.equal(sent.position, 3);
    assert.equal(sent.k, 2);
    assert.equal(typeof sent.id, "number");
    model.emit(
      {
        type: "response",
        id: sent.id,
        what: "predictions",
        tokens: [" Paris", " the"],
        arrays: [
          { name: "ids", dtype: "int32", shape: [2], buffer: 0 },
          { name: "probs", dtype: "float32", shape: [2], buffer: 1 },
        ],
      },
      [i32([7, 9]), f32([0.5, 0.25])],
    );
    const r = await p;
    assert.ok(r);
    assert.deepEqual(r.msg["tokens"], [" Paris", " the"]);
    assert.deepEqual(Array.from(r.arrays["ids"]!.data), [7, 9]);
    assert.deepEqual(Array.from(r.arrays["probs"]!.data), [0.5, 0.25]);

    client.request("other", "x");
    assert.ok(model.last().id > sent.id);
    client.dispose();
  });

  test("params cannot overwrite the protocol fields", () => {
    const model = new FakeModel();
    const client = new Client(model);
    client.request("s", "predictions", { type: "evil", id: -5, what: "other" });
    assert.equal(model.last().type, "request");
    assert.equal(model.last().what, "predictions");
    assert.notEqual(model.last().id, -5);
    client.dispose();
  });

  test("an error reply rejects with the kernel's message", async () => {
    const model = new FakeModel();
    const client = new Client(model);
    const p = client.request("predictions", "predictions", { position: 99, k: 5 });
    const message = "position 99 is out of range: the text has tokens 0..11";
    model.emit({ type: "error", id: model.last().id, what: "predictions", message });
    await assert.rejects(p, { message });
    client.dispose();
  });

  test("progress reaches the callback", async () => {
    const model = new FakeModel();
    const client = new Client(model);
    const seen: [number, number][] = [];
    const p = client.request("s", "slow", {}, ({ done, total }) => seen.push([done, total]));
    const id = model.last().id;
    model.emit({ type: "progress", id, done: 1, total: 3 });
    model.emit({ type: "progress", id, done: 2, total: 3 });
    model.emit({ type: "response", id, what: "slow", arrays: [] });
    assert.ok(await p);
    assert.deepEqual(seen, [
      [1, 3],
      [2, 3],
    ]);
    client.dispose();
  });

  test("a newer request in the same slot makes the older one stale", async () => {
    const model = new FakeModel();
    const client = new Client(model);
    const first = client.request("predictions", "predictions", { position: 1 });
    const firstId = model.last().id;
    const other = client.request("attention", "attention", { layer: 0 });
    const otherId = model.last().id;
    const second = client.request("predictions", "predictions", { position: 2 });
    const secondId = model.last().id;
    assert.equal(await first, null);

    // The late answer to the stale request is dropped; the current one still resolves.
    model.emit({ type: "response", id: firstId, what: "predictions", marker: "late" });
    model.emit({ type: "error", id: firstId, what: "predictions", message: "late error" });
    model.emit({ type: "response", id: secondId, what: "predictions", marker: "current" });
    const r = await second;
    assert.equal(r?.msg["marker"], "current");

    // Other slots are untouched.
    assert.equal(client.isPending("attention"), true);
    model.emit({ type: "response", id: otherId, what: "attention" });
    assert.ok(await other);
    assert.equal(client.isPending("attention"), false);
    client.dispose();
  });

  test("answers to ids it did not send are ignored (another view of the model)", async () => {
    const model = new FakeModel();
    const a = new Client(model);
    const b = new Client(model);
    const pa = a.request("predictions", "predictions", { position: 1 });
    const idA = model.last().id;
    const pb = b.request("predictions", "predictions", { position: 2 });
    const idB = model.last().id;
    assert.notEqual(idA, idB);
    model.emit({ type: "response", id: idB, what: "predictions", who: "b" });
    model.emit({ type: "response", id: idA, what: "predictions", who: "a" });
    assert.equal((await pa)?.msg["who"], "a");
    assert.equal((await pb)?.msg["who"], "b");
    model.emit({ type: "response", id: 123456789, what: "predictions" });
    model.emit("not an object");
    model.emit(null);
    a.dispose();
    b.dispose();
  });

  test("a response that does not decode rejects with a clear message", async () => {
    const model = new FakeModel();
    const client = new Client(model);
    const p = client.request("s", "predictions");
    model.emit({ type: "response", id: model.last().id, arrays: [{ name: "probs", dtype: "float32", shape: [5], buffer: 0 }] }, [
      f32([1, 2]),
    ]);
    await assert.rejects(p, /could not decode the answer to "predictions": array "probs"/);
    client.dispose();
  });

  test("times out with a clear message", async () => {
    const model = new FakeModel();
    const client = new Client(model, { timeoutMs: 20 });
    const p = client.request("s", "predictions");
    const id = model.last().id;
    await assert.rejects(p, /no answer to "predictions" after 0\.02 s/);
    assert.equal(client.isPending("s"), false);
    model.emit({ type: "response", id, what: "predictions" }); // too late: dropped, no throw
    const q = client.request("s", "predictions", {}, undefined, { timeoutMs: 10 });
    await assert.rejects(q, /after 0\.01 s/);
    client.dispose();
  });

  test("cancel and dispose resolve pending requests to null and stop listening", async () => {
    const model = new FakeModel();
    const client = new Client(model);
    const a = client.request("a", "x");
    client.cancel("a");
    assert.equal(await a, null);
    const b = client.request("b", "x");
    assert.equal(model.listeners.length, 1);
    client.dispose();
    assert.equal(await b, null);
    assert.equal(model.listeners.length, 0);
    const sentBefore = model.sent.length;
    assert.equal(await client.request("c", "x"), null);
    assert.equal(model.sent.length, sentBefore);
    await tick();
  });

  test("chunks reach onChunk in order, decoded, before the response resolves", async () => {
    const model = new FakeModel();
    const client = new Client(model);
    const seen: [unknown, number[]][] = [];
    let resolved = false;
    const p = client.request("overview", "overview", { size: 8 }, undefined, {
      onChunk: (msg, arrays) => {
        assert.equal(resolved, false);
        seen.push([msg["layer"], Array.from(arrays["scores"]!.data)]);
      },
    });
    const id = model.last().id;
    const desc = [{ name: "scores", dtype: "float32", shape: [2], buffer: 0 }];
    model.emit({ type: "chunk", id, what: "overview", layer: 0, arrays: desc }, [f32([1, 2])]);
    model.emit({ type: "chunk", id, what: "overview", layer: 1, arrays: desc }, [f32([3, 4])]);
    assert.equal(client.isPending("overview"), true);
    model.emit({ type: "response", id, what: "overview", layers: 2 });
    const r = await p;
    resolved = true;
    assert.equal(r?.msg["layers"], 2);
    assert.deepEqual(seen, [
      [0, [1, 2]],
      [1, [3, 4]],
    ]);
    // A chunk after the response (a confused kernel) is dropped.
    model.emit({ type: "chunk", id, what: "overview", layer: 2, arrays: desc }, [f32([5, 6])]);
    assert.equal(seen.length, 2);
    client.dispose();
  });

  test("a stale request's chunks are dropped; the live one's still arrive", async () => {
    const model = new FakeModel();
    const client = new Client(model);
    const seen: string[] = [];
    const first = client.request("token", "token", { position: 1 }, undefined, { onChunk: (m) => seen.push(`a${m["part"]}`) });
    const firstId = model.last().id;
    model.emit({ type: "chunk", id: firstId, what: "token", part: 0 });
    const second = client.request("token", "token", { position: 2 }, undefined, { onChunk: (m) => seen.push(`b${m["part"]}`) });
    const secondId = model.last().id;
    assert.equal(await first, null);
    model.emit({ type: "chunk", id: firstId, what: "token", part: 1 }); // late: stale
    model.emit({ type: "chunk", id: secondId, what: "token", part: 0 });
    model.emit({ type: "response", id: firstId, what: "token" });
    model.emit({ type: "response", id: secondId, what: "token", marker: "b" });
    assert.equal((await second)?.msg["marker"], "b");
    assert.deepEqual(seen, ["a0", "b0"]);

    // Cancelled and disposed requests get no chunks either.
    const third = client.request("x", "x", {}, undefined, { onChunk: () => seen.push("c") });
    const thirdId = model.last().id;
    client.cancel("x");
    model.emit({ type: "chunk", id: thirdId, what: "x" });
    assert.equal(await third, null);
    assert.deepEqual(seen, ["a0", "b0"]);
    client.dispose();
  });

  test("a chunk that does not decode, or an onChunk that throws, rejects the request", async () => {
    const model = new FakeModel();
    const client = new Client(model);
    const p = client.request("s", "overview", {}, undefined, { onChunk: () => undefined });
    const id = model.last().id;
    model.emit({ type: "chunk", id, arrays: [{ name: "thumbs", dtype: "uint8", shape: [4], buffer: 0 }] }, [f32([1])]);
    await assert.rejects(p, /could not decode a part of the answer to "overview": array "thumbs"/);
    assert.equal(client.isPending("s"), false);

    const q = client.request("s", "overview", {}, undefined, {
      onChunk: () => {
        throw new Error("bad chunk");
      },
    });
    model.emit({ type: "chunk", id: model.last().id });
    await assert.rejects(q, /bad chunk/);
    assert.equal(client.isPending("s"), false);
    client.dispose();
  });

  test("chunks and progress keep a long stream alive past the timeout", async () => {
    const model = new FakeModel();
    const client = new Client(model, { timeoutMs: 40 });
    const p = client.request("s", "overview", {}, undefined, { onChunk: () => undefined });
    const id = model.last().id;
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 25));
      model.emit({ type: i % 2 ? "progress" : "chunk", id, done: i, total: 4 });
    }
    model.emit({ type: "response", id, what: "overview" });
    assert.ok(await p);
    client.dispose();
  });

  test("snapshot messages from the kernel are answered with the PNG as the one buffer", async () => {
    const model = new FakeModel();
    const client = new Client(model);
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47]).buffer;
    model.emit({ type: "snapshot", id: 3 }); // no handler yet: ignored
    assert.equal(model.sent.length, 0);
    client.onSnapshot(async () => ({ shown: "matrix", png }));
    model.emit({ type: "snapshot", id: 3 });
    await tick();
    assert.equal(model.sent.length, 1);
    assert.deepEqual(model.sentBuffers[0], [png]);
    assert.deepEqual(model.last(), { type: "snapshot", id: 3, shown: "matrix" });

    client.onSnapshot(() => Promise.reject(new Error("nothing to draw")));
    model.emit({ type: "snapshot", id: 4 });
    await tick();
    assert.deepEqual(model.last(), { type: "snapshot", id: 4, shown: "", error: "nothing to draw" });
    assert.equal(model.sentBuffers[1], undefined);

    // A snapshot id that equals a pending request's id is still a snapshot, not an answer.
    client.onSnapshot(async () => ({ shown: "overview", png }));
    const r = client.request("s", "x");
    const id = model.last().id;
    model.emit({ type: "snapshot", id });
    await tick();
    assert.equal(model.last().shown, "overview");
    assert.equal(client.isPending("s"), true);
    client.dispose();
    assert.equal(await r, null);
  });
});
