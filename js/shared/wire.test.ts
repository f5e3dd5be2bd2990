// Unit tests of the wire decoder: run by `npm test` (bundled into build/tests/ by build.mjs).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decodeArray, decodeArrays, decodeRaw, floats, halfToFloat, ints, type ArrayDescriptor } from "./wire";

/** Bytes of little-endian uint16 values, at `pad` bytes into a larger buffer with junk around. */
function halves(bits: number[], pad = 0): DataView {
  const buf = new ArrayBuffer(pad + bits.length * 2 + 7);
  new Uint8Array(buf).fill(0xab);
  const view = new DataView(buf, pad, bits.length * 2);
  bits.forEach((b, i) => view.setUint16(2 * i, b, true));
  return view;
}

function float32s(values: number[], pad = 0): DataView {
  const buf = new ArrayBuffer(pad + values.length * 4 + 5);
  new Uint8Array(buf).fill(0xcd);
  const view = new DataView(buf, pad, values.length * 4);
  values.forEach((v, i) => view.setFloat32(4 * i, v, true));
  return view;
}

function int32s(values: number[], pad = 0): DataView {
  const buf = new ArrayBuffer(pad + values.length * 4 + 3);
  new Uint8Array(buf).fill(0xef);
  const view = new DataView(buf, pad, values.length * 4);
  values.forEach((v, i) => view.setInt32(4 * i, v, true));
  return view;
}

const desc = (dtype: ArrayDescriptor["dtype"], shape: number[], extra: Partial<ArrayDescriptor> = {}): ArrayDescriptor => ({
  name: "x",
  dtype,
  shape,
  buffer: 0,
  ...extra,
});

/** Independent float16 → float32 for normal, infinite and NaN halves: move the bits over. */
function halfByBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  const exp32 = e === 0x1f ? 0xff : e - 15 + 127;
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, (sign | (exp32 << 23) | (f << 13)) >>> 0);
  return view.getFloat32(0);
}

describe("float16", () => {
  test("known values", () => {
    assert.equal(halfToFloat(0x3c00), 1);
    assert.equal(halfToFloat(0xc000), -2);
    assert.equal(halfToFloat(0x7bff), 65504);
    assert.equal(halfToFloat(0x0001), 2 ** -24); // smallest subnormal
    assert.equal(halfToFloat(0x03ff), 1023 * 2 ** -24); // largest subnormal
    assert.equal(halfToFloat(0x0400), 2 ** -14); // smallest normal
    assert.equal(halfToFloat(0x3555), 0.333251953125);
    assert.equal(halfToFloat(0x7c00), Infinity);
    assert.equal(halfToFloat(0xfc00), -Infinity);
    assert.ok(Number.isNaN(halfToFloat(0x7e00)));
    assert.ok(Number.isNaN(halfToFloat(0x7c01)));
    assert.ok(Number.isNaN(halfToFloat(0xfe00)));
    assert.ok(Object.is(halfToFloat(0x0000), 0));
    assert.ok(Object.is(halfToFloat(0x8000), -0));
    assert.equal(halfToFloat(0x8001), -(2 ** -24));
  });

  test("decodeArray widens to Float32Array", () => {
    const bits = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0xfc00, 0x7e00, 0x8000];
    const a = decodeArray(desc("float16", [2, 4]), [halves(bits)]);
    assert.ok(a.data instanceof Float32Array);
    assert.deepEqual(a.shape, [2, 4]);
    assert.equal(a.dtype, "float16");
    const d = Array.from(a.data);
    assert.deepEqual(d.slice(0, 6), [1, -2, 65504, 2 ** -24, Infinity, -Infinity]);
    assert.ok(Number.isNaN(d[6]));
    assert.ok(Object.is(d[7], -0));
  });

  test("every normal, infinite and NaN half matches the bit-level conversion", () => {
    const all = Array.from({ length: 65536 }, (_, h) => h);
    const a = decodeArray(desc("float16", [65536]), [halves(all)]);
    for (let h = 0; h < 65536; h++) {
      const got = a.data[h]!;
      if (((h >> 10) & 0x1f) === 0) {
        // zero and subnormals: exact multiples of 2^-24
        const want = (h & 0x8000 ? -1 : 1) * (h & 0x3ff) * 2 ** -24;
        assert.ok(Object.is(got, want), `half 0x${h.toString(16)}: ${got} != ${want}`);
        continue;
      }
      const want = halfByBits(h);
      if (Number.isNaN(want)) assert.ok(Number.isNaN(got), `half 0x${h.toString(16)} should be NaN`);
      else assert.equal(got, want, `half 0x${h.toString(16)}`);
    }
  });

  test("decodeRaw keeps the bits", () => {
    const r = decodeRaw(desc("float16", [3]), [halves([0x3c00, 0xc000, 0x0001], 3)]);
    assert.ok(r.data instanceof Uint16Array);
    assert.deepEqual(Array.from(r.data), [0x3c00, 0xc000, 0x0001]);
  });
});

describe("float32 and int32", () => {
  test("float32 in C order", () => {
    const values = [0.5, -1.25, 3, 1e-8, 123456.5, -0];
    const a = decodeArray(desc("float32", [2, 3]), [float32s(values)]);
    assert.ok(a.data instanceof Float32Array);
    assert.deepEqual(Array.from(a.data), values.map(Math.fround));
  });

  test("int32, negative values included", () => {
    const values = [0, 1, -1, 2147483647, -2147483648, 49151];
    const a = decodeArray(desc("int32", [6]), [int32s(values)]);
    assert.ok(a.data instanceof Int32Array);
    assert.deepEqual(Array.from(a.data), values);
  });

  test("a plain ArrayBuffer works too", () => {
    const buf = new ArrayBuffer(12);
    [1, 2, 3].forEach((v, i) => new DataView(buf).setFloat32(4 * i, v, true));
    assert.deepEqual(Array.from(decodeArray(desc("float32", [3]), [buf]).data), [1, 2, 3]);
  });

  test("a zero-size array", () => {
    const a = decodeArray(desc("float32", [0, 4]), [new DataView(new ArrayBuffer(0))]);
    assert.equal(a.data.length, 0);
    assert.deepEqual(a.shape, [0, 4]);
  });
});

describe("byteOffset and byteLength", () => {
  for (const pad of [1, 2, 3, 5, 7]) {
    test(`unaligned offset ${pad}`, () => {
      const f = decodeArray(desc("float32", [4]), [float32s([1.5, -2.5, 1e20, 7], pad)]);
      assert.deepEqual(Array.from(f.data), [1.5, -2.5, Math.fround(1e20), 7]);
      const i = decodeArray(desc("int32", [3]), [int32s([-7, 8, 1 << 30], pad)]);
      assert.deepEqual(Array.from(i.data), [-7, 8, 1 << 30]);
      const h = decodeArray(desc("float16", [2]), [halves([0x3c00, 0xc000], pad)]);
      assert.deepEqual(Array.from(h.data), [1, -2]);
    });
  }

  test("aligned view into a larger buffer reads only its own bytes", () => {
    const view = float32s([9, 8, 7], 8);
    assert.equal(view.byteOffset, 8);
    assert.ok(view.buffer.byteLength > 8 + 12);
    assert.deepEqual(Array.from(decodeArray(desc("float32", [3]), [view]).data), [9, 8, 7]);
  });

  test("a Uint8Array view is honoured like a DataView", () => {
    const view = int32s([5, -6], 1);
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    assert.deepEqual(Array.from(decodeArray(desc("int32", [2]), [bytes]).data), [5, -6]);
  });
});

describe("uint8", () => {
  test("value = offset + q * scale", () => {
    const buf = new ArrayBuffer(10);
    const bytes = new Uint8Array(buf, 3, 4);
    bytes.set([0, 1, 128, 255]);
    const d = desc("uint8", [2, 2], { scale: 0.5, offset: -1 });
    const a = decodeArray(d, [new DataView(buf, 3, 4)]);
    assert.ok(a.data instanceof Float32Array);
    assert.deepEqual(Array.from(a.data), [-1, -0.5, 63, 126.5]);
    const raw = decodeRaw(d, [new DataView(buf, 3, 4)]);
    assert.ok(raw.data instanceof Uint8Array);
    assert.deepEqual(Array.from(raw.data), [0, 1, 128, 255]);
    assert.equal(raw.scale, 0.5);
    assert.equal(raw.offset, -1);
  });

  test("attention-style scale = max / 255 stays within scale / 2", () => {
    const truth = [0, 0.1, 0.25, 0.333, 0.9, 1.0];
    const scale = 1.0 / 255;
    const q = truth.map((v) => Math.round(v / scale));
    const a = decodeArray(desc("uint8", [6], { scale, offset: 0 }), [new DataView(new Uint8Array(q).buffer)]);
    truth.forEach((v, i) => assert.ok(Math.abs(a.data[i]! - v) <= scale / 2 + 1e-7));
  });

  test("needs scale and offset", () => {
    assert.throws(() => decodeArray(desc("uint8", [1]), [new ArrayBuffer(1)]), /scale/);
  });
});

describe("errors name what is wrong", () => {
  test("byte length mismatch", () => {
    assert.throws(
      () => decodeArray({ name: "probs", dtype: "float32", shape: [5], buffer: 0 }, [new ArrayBuffer(16)]),
      /array "probs": float32 \[5\] needs 20 bytes, the buffer has 16/,
    );
  });
  test("missing buffer", () => {
    assert.throws(() => decodeArray(desc("float32", [1], { buffer: 2 }), [new ArrayBuffer(4)]), /buffer 2.*1 buffer/);
  });
  test("unknown dtype", () => {
    assert.throws(
      () => decodeArray({ ...desc("float32", [1]), dtype: "float64" as never }, [new ArrayBuffer(8)]),
      /unsupported dtype "float64"/,
    );
  });
  test("bad shape", () => {
    assert.throws(() => decodeArray(desc("float32", [-1]), [new ArrayBuffer(4)]), /invalid shape/);
  });
});

describe("decodeArrays", () => {
  test("decodes every descriptor by name, buffers in the order named", () => {
    const msg = {
      type: "response",
      arrays: [
        { name: "probs", dtype: "float32", shape: [2], buffer: 1 },
        { name: "ids", dtype: "int32", shape: [2], buffer: 0 },
      ] as ArrayDescriptor[],
    };
    const arrays = decodeArrays(msg, [int32s([42, 7], 1), float32s([0.75, 0.25], 2)]);
    assert.deepEqual(Object.keys(arrays).sort(), ["ids", "probs"]);
    assert.deepEqual(Array.from(ints(arrays, "ids")), [42, 7]);
    assert.deepEqual(Array.from(floats(arrays, "probs")), [0.75, 0.25]);
    assert.throws(() => ints(arrays, "probs"), /expected int32/);
    assert.throws(() => floats(arrays, "logits"), /no array "logits"/);
  });

  test("no arrays → empty record", () => {
    assert.deepEqual(decodeArrays({}, []), {});
  });

  test("duplicate names are an error", () => {
    const d = { name: "a", dtype: "int32", shape: [1], buffer: 0 } as ArrayDescriptor;
    assert.throws(() => decodeArrays({ arrays: [d, d] }, [int32s([1])]), /two arrays named "a"/);
  });
});
