// Decodes the binary arrays the kernel sends (see DESIGN.md, "Wire format and protocol"): one
// buffer per array, little-endian, C order, described by a JSON descriptor beside it.

export type Dtype = "float32" | "float16" | "uint8" | "int32";

/** The JSON descriptor of one array, as `llmasos_widgets/_wire.py` writes it. */
export interface ArrayDescriptor {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Index of the array's bytes in the message's buffers. */
  buffer: number;
  /** uint8 only: value = offset + q * scale. */
  scale?: number;
  offset?: number;
}

/** A decoded array: float16 and uint8 are widened to Float32Array, int32 stays Int32Array. */
export interface DecodedArray {
  name: string;
  dtype: Dtype;
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array;
}

/** The bytes as sent: float16 as raw bit patterns (Uint16Array), uint8 as the quantized q. */
export interface RawArray {
  name: string;
  dtype: Dtype;
  shape: number[];
  data: Float32Array | Uint16Array | Uint8Array | Int32Array;
  scale?: number;
  offset?: number;
}

/** What anywidget hands to "msg:custom" listeners (DataView[]), or plain ArrayBuffers. */
export type Buffers = readonly (DataView | ArrayBufferView | ArrayBuffer)[];

const ITEMSIZE: Record<Dtype, number> = { float32: 4, float16: 2, uint8: 1, int32: 4 };

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function describe(desc: ArrayDescriptor): string {
  return `array "${String(desc.name)}"`;
}

/** Number of elements of a shape, checking that it is a list of non-negative integers. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid shape [${shape.join(", ")}]`);
    n *= d;
  }
  return n;
}

function bytesOf(desc: ArrayDescriptor, buffers: Buffers): { buffer: ArrayBufferLike; byteOffset: number; byteLength: number } {
  const index = desc.buffer;
  if (!Number.isInteger(index) || index < 0 || index >= buffers.length) {
    throw new Error(`${describe(desc)} names buffer ${String(index)} but the message has ${buffers.length} buffer(s)`);
  }
  const b = buffers[index]!;
  if (b instanceof ArrayBuffer) return { buffer: b, byteOffset: 0, byteLength: b.byteLength };
  if (ArrayBuffer.isView(b)) return { buffer: b.buffer, byteOffset: b.byteOffset, byteLength: b.byteLength };
  throw new Error(`${describe(desc)}: buffer ${index} is neither an ArrayBuffer nor a view of one`);
}

/**
 * The array's elements as the typed array of its dtype, without conversion. A view on the message's
 * memory when it is aligned and the host is little-endian; a copy otherwise.
 */
export function decodeRaw(desc: ArrayDescriptor, buffers: Buffers): RawArray {
  const itemsize = ITEMSIZE[desc.dtype];
  if (itemsize === undefined) {
    throw new Error(
      `${describe(desc)} has unsupported dtype "${String(desc.dtype)}" (supported: float32, float16, uint8, int32)`,
    );
  }
  if (!Array.isArray(desc.shape)) throw new Error(`${describe(desc)} has no shape`);
  const shape = desc.shape.slice();
  const n = sizeOf(shape);
  const { buffer, byteOffset, byteLength } = bytesOf(desc, buffers);
  if (byteLength !== n * itemsize) {
    throw new Error(
      `${describe(desc)}: ${desc.dtype} [${shape.join(", ")}] needs ${n * itemsize} bytes, the buffer has ${byteLength}`,
    );
  }
  const base = { name: desc.name, dtype: desc.dtype, shape };
  if (desc.dtype === "uint8") {
    const scale = desc.scale;
    const offset = desc.offset;
    if (typeof scale !== "number" || typeof offset !== "number" || !Number.isFinite(scale) || !Number.isFinite(offset)) {
      throw new Error(`${describe(desc)}: uint8 needs finite "scale" and "offset"`);
    }
    return { ...base, data: new Uint8Array(buffer, byteOffset, n), scale, offset };
  }

  if (LITTLE_ENDIAN_HOST) {
    // Typed arrays need their offset to be a multiple of the item size: copy when it is not.
    let buf = buffer;
    let off = byteOffset;
    if (off % itemsize !== 0) {
      buf = new Uint8Array(buffer, byteOffset, byteLength).slice().buffer;
      off = 0;
    }
    switch (desc.dtype) {
      case "float32":
        return { ...base, data: new Float32Array(buf, off, n) };
      case "float16":
        return { ...base, data: new Uint16Array(buf, off, n) };
      case "int32":
        return { ...base, data: new Int32Array(buf, off, n) };
    }
  }

  // Big-endian host: read element by element, little-endian.
  const view = new DataView(buffer, byteOffset, byteLength);
  switch (desc.dtype) {
    case "float32": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return { ...base, data: out };
    }
    case "float16": {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, true);
      return { ...base, data: out };
    }
    case "int32": {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
      return { ...base, data: out };
    }
  }
}

/** IEEE 754 half precision bits → number, exact (every half is a float32). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and subnormals
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

let halfTable: Float32Array | undefined;

/** All 65,536 halves widened once (256 KiB), so large patterns decode with one lookup each. */
function halfLookup(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

/** Decode one array: float16 → Float32Array, uint8 → Float32Array of offset + q * scale. */
export function decodeArray(desc: ArrayDescriptor, buffers: Buffers): DecodedArray {
  const raw = decodeRaw(desc, buffers);
  const { name, dtype, shape } = raw;
  if (dtype === "float16") {
    const bits = raw.data as Uint16Array;
    const table = halfLookup();
    const out = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
    return { name, dtype, shape, data: out };
  }
  if (dtype === "uint8") {
    const q = raw.data as Uint8Array;
    const scale = raw.scale!;
    const offset = raw.offset!;
    const out = new Float32Array(q.length);
    for (let i = 0; i < q.length; i++) out[i] = offset + q[i]! * scale;
    return { name, dtype, shape, data: out };
  }
  return { name, dtype, shape, data: raw.data as Float32Array | Int32Array };
}

/** A message that may carry arrays (a "response"). */
export interface ArrayMessage {
  arrays?: ArrayDescriptor[];
}

/** Decode every array a message names, keyed by name. */
export function decodeArrays(msg: ArrayMessage, buffers: Buffers): Record<string, DecodedArray> {
  const out: Record<string, DecodedArray> = {};
  const descriptors = msg.arrays ?? [];
  if (!Array.isArray(descriptors)) throw new Error(`"arrays" must be a list of descriptors`);
  for (const desc of descriptors) {
    if (Object.prototype.hasOwnProperty.call(out, desc.name)) {
      throw new Error(`the message carries two arrays named "${desc.name}"`);
    }
    out[desc.name] = decodeArray(desc, buffers);
  }
  return out;
}

function pick(arrays: Record<string, DecodedArray>, name: string): DecodedArray {
  const a = Object.prototype.hasOwnProperty.call(arrays, name) ? arrays[name] : undefined;
  if (!a) throw new Error(`the response has no array "${name}" (it has: ${Object.keys(arrays).join(", ") || "none"})`);
  return a;
}

/** The named array as floats (float32, float16 or uint8 on the wire); throws if missing or int32. */
export function floats(arrays: Record<string, DecodedArray>, name: string): Float32Array {
  const a = pick(arrays, name);
  if (!(a.data instanceof Float32Array)) throw new Error(`array "${name}" is ${a.dtype}, expected floats`);
  return a.data;
}

/** The named array as int32; throws if missing or of another dtype. */
export function ints(arrays: Record<string, DecodedArray>, name: string): Int32Array {
  const a = pick(arrays, name);
  if (!(a.data instanceof Int32Array)) throw new Error(`array "${name}" is ${a.dtype}, expected int32`);
  return a.data;
}
