// The Explorer's page cache and its one door to the kernel (DESIGN.md, "Explorer"). Every panel's
// request passes through the Hub: one the Store holds is answered in the page, with no message to the
// kernel (an exported file's ReplayModel answers the same way, from the same kind of record); the others
// of one turn (a click) leave together as one `batch` in the panels' on-screen order, with the ids a
// newer click made stale, so the kernel never computes those. While a batch has no word back (the
// kernel runs a cell), later misses wait in the page and only the newest of each kind leaves. When the
// page is idle the Hub asks the kernel to fill the Store around the selection (`prefetch`), within a
// budget of bytes; the kernel answers with `stored` messages keyed as an exported file's records are.

import type { ViewModel } from "../shared/view";
import { replayKey } from "../shared/recorded";

/** One answer as the kernel sent it: its messages, each with its buffers. */
export interface StoredAnswer {
  messages: { content: Record<string, unknown>; buffers: DataView[] }[];
  bytes: number;
}

/** Answers by request key, least recently used first, within `budget` bytes. */
export class Store {
  private readonly entries = new Map<string, StoredAnswer>();
  private used = 0;
  /** Keys dropped for room since the kernel last heard (it sends them again if wanted). */
  readonly forgotten: string[] = [];

  constructor(public budget: number) {}

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.used;
  }

  /** The answer for `key` (it becomes the most recently used), or undefined. */
  take(key: string): StoredAnswer | undefined {
    const found = this.entries.get(key);
    if (found) {
      this.entries.delete(key);
      this.entries.set(key, found);
    }
    return found;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  put(key: string, answer: StoredAnswer): void {
    if (answer.bytes > this.budget) return;
    const old = this.entries.get(key);
    if (old) {
      this.used -= old.bytes;
      this.entries.delete(key);
    }
    this.entries.set(key, answer);
    this.used += answer.bytes;
    for (const [k, v] of this.entries) {
      if (this.used <= this.budget) break;
      this.entries.delete(k);
      this.used -= v.bytes;
      this.forgotten.push(k);
    }
  }
}

/** What a message's JSON weighs in the page, as counted (views/serve.py sizes attention rows the same way). */
export const MESSAGE_BYTES = 512;

/** What a message and its buffers weigh in the page: the buffers, and MESSAGE_BYTES for the rest. */
export function weight(buffers: DataView[]): number {
  return buffers.reduce((n, b) => n + b.byteLength, 0) + MESSAGE_BYTES;
}

type Deliver = (msg: Record<string, unknown>, buffers: DataView[]) => void;

interface Asked {
  key: string;
  panel: string;
  content: Record<string, unknown>;
}

/** How long after the last request the page counts as idle and asks for the prefetch. */
const IDLE_MS = 250;
/** A click that missed nothing re-centres the prefetch only this far from where it was centred. */
const RECENTRE = 8;

export class Hub {
  readonly store: Store;
  private readonly panels = new Map<string, Deliver>();
  private waiting: Asked[] = []; // misses not yet sent
  private drop: number[] = []; // ids made stale since the last batch
  private readonly recording = new Map<number, { key: string; answer: StoredAnswer }>();
  private batchNo = 0;
  private unacked = 0; // the batch the kernel has not acknowledged (0: none)
  private flushQueued = false;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private centre: number | null = null; // the position the last prefetch was centred on
  private disposed = false;
  /** Counters the page shows on the Explorer's root (data-*): tests and the bench read them. */
  readonly counts = { hits: 0, batches: 0, requests: 0, stored: 0, prefetchDone: false };
  private readonly listener = (msg: unknown, buffers: DataView[] | undefined): void => this.receive(msg, buffers ?? []);

  constructor(
    private readonly host: ViewModel,
    /** The open panels, in their order on screen. */
    private readonly order: () => string[],
    budgetBytes: number,
    private readonly onCounts: () => void = () => undefined,
  ) {
    this.store = new Store(budgetBytes);
    host.on("msg:custom", this.listener);
  }

  /** A panel's messages arrive through `deliver` (its PanelModel emits them to the panel). */
  attach(panel: string, deliver: Deliver): () => void {
    this.panels.set(panel, deliver);
    return () => {
      if (this.panels.get(panel) === deliver) this.panels.delete(panel);
    };
  }

  /** A panel's message to the kernel: a request is answered from the Store or joins this turn's batch. */
  send(panel: string, content: Record<string, unknown>, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void {
    if (content?.["type"] !== "request") {
      this.host.send({ ...content, panel }, callbacks, buffers);
      return;
    }
    const tagged = { ...content, panel };
    const key = replayKey(tagged);
    const found = this.store.take(key);
    const id = content["id"];
    if (found) {
      this.counts.hits++;
      this.onCounts();
      queueMicrotask(() => {
        const deliver = this.panels.get(panel);
        for (const m of found.messages) deliver?.({ ...m.content, id, panel }, m.buffers);
      });
      const at = this.position();
      if (this.centre !== null && Math.abs(at - this.centre) > RECENTRE) this.idle();
      return;
    }
    this.waiting.push({ key, panel, content: tagged });
    if (!this.flushQueued) {
      this.flushQueued = true;
      setTimeout(() => this.flush(), 0); // every panel's request of this click, then one message
    }
  }

  /** A panel's request became stale (its client asked anew, or the panel went): never sent, or dropped by the kernel. */
  dropped(id: number): void {
    const before = this.waiting.length;
    this.waiting = this.waiting.filter((a) => a.content["id"] !== id);
    if (this.waiting.length === before) this.drop.push(id);
    this.recording.delete(id);
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.idleTimer);
    this.host.off("msg:custom", this.listener);
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.disposed || this.unacked || (this.waiting.length === 0 && this.drop.length === 0)) return;
    const rank = new Map(this.order().map((p, i) => [p, i]));
    const requests = this.waiting
      .map((a, i) => [a, i] as const)
      .sort(([a, i], [b, j]) => (rank.get(a.panel) ?? 99) - (rank.get(b.panel) ?? 99) || i - j)
      .map(([a]) => a);
    this.waiting = [];
    for (const a of requests) this.recording.set(a.content["id"] as number, { key: a.key, answer: { messages: [], bytes: 0 } });
    this.unacked = ++this.batchNo;
    this.counts.batches++;
    this.counts.requests += requests.length;
    this.onCounts();
    const drop = this.drop.splice(0);
    // The prefetch re-centres on the click in the same message: the kernel answers the click first.
    const prefetch = this.store.budget > 0 ? this.prefetchAsk() : undefined;
    clearTimeout(this.idleTimer);
    this.host.send({ type: "batch", batch: this.unacked, requests: requests.map((a) => a.content), drop, prefetch });
  }

  /** Ask for the prefetch once the page has been quiet a moment (after the first draw, after each click). */
  private idle(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.prefetch(), IDLE_MS);
  }

  private position(): number {
    const at = this.host.get("selected_token");
    return typeof at === "number" ? at : -1;
  }

  /** Start (or re-centre) the prefetch: also when a panel opens or the panels move. */
  prefetchSoon(): void {
    this.idle();
  }

  private prefetch(): void {
    if (this.disposed || this.store.budget <= 0) return;
    if (this.unacked || this.waiting.length || this.recording.size) {
      this.idle(); // the first draw, or the click, is answered first
      return;
    }
    this.host.send({ type: "prefetch", ...this.prefetchAsk() });
  }

  private prefetchAsk(): Record<string, unknown> {
    this.counts.prefetchDone = false;
    this.centre = this.position();
    return { position: this.centre, panels: this.order(), budget: this.store.budget, forget: this.store.forgotten.splice(0) };
  }

  private receive(msg: unknown, buffers: DataView[]): void {
    if (typeof msg !== "object" || msg === null) return;
    const m = msg as Record<string, unknown>;
    if (m["type"] === "ack") {
      if (m["batch"] === this.unacked) this.unacked = 0;
      if (this.waiting.length || this.drop.length) this.flush();
      return;
    }
    if (m["type"] === "stored") {
      this.file(m, buffers);
      return;
    }
    const id = m["id"];
    if (typeof id !== "number") return;
    const rec = this.recording.get(id);
    if (!rec) return;
    if (m["type"] === "chunk" || m["type"] === "response") {
      const { id: _id, ...content } = m;
      rec.answer.messages.push({ content, buffers });
      rec.answer.bytes += weight(buffers);
    }
    if (m["type"] === "response" || m["type"] === "error") {
      this.recording.delete(id);
      if (m["type"] === "response") this.store.put(rec.key, rec.answer); // the same click again is answered here
    }
  }

  /** A group of prefetched answers: each entry's messages name their buffers by index in this message's. */
  private file(m: Record<string, unknown>, buffers: DataView[]): void {
    const entries = Array.isArray(m["entries"]) ? (m["entries"] as { key: string; messages: { content: Record<string, unknown>; buffers: number[] }[] }[]) : [];
    for (const entry of entries) {
      const messages = entry.messages.map((x) => ({ content: x.content, buffers: x.buffers.map((i) => buffers[i]!) }));
      const bytes = messages.reduce((n, x) => n + weight(x.buffers), 0);
      this.store.put(entry.key, { messages, bytes });
      this.counts.stored++;
    }
    if (m["done"] === true) this.counts.prefetchDone = true;
    this.onCounts();
  }
}
