// Request/response over an anywidget model's custom messages (DESIGN.md, "Messages"): each request
// has an id and a slot; a newer request in a slot makes the older one stale, and a stale answer (its
// chunks included) is dropped, never shown. Also answers the kernel's snapshot requests.

import { decodeArrays, type ArrayDescriptor, type Buffers, type DecodedArray } from "./wire";

/** The part of anywidget's AnyModel the client uses (AnyModel satisfies it). */
export interface MessageModel {
  send(content: any, callbacks?: any, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
  on(eventName: "msg:custom", callback: (msg: any, buffers: DataView[]) => void): void;
  off(eventName?: "msg:custom" | null, callback?: ((...args: any[]) => void) | null): void;
  /** Told when a sent request went stale (an Explorer's panel: the kernel then never computes it). */
  dropped?(id: number): void;
}

/** A kernel's answer: the JSON message and its arrays decoded by name. */
export interface Response {
  msg: ResponseMessage;
  arrays: Record<string, DecodedArray>;
}

export interface ResponseMessage {
  type: "response";
  id: number;
  what: string;
  arrays?: ArrayDescriptor[];
  [field: string]: unknown;
}

/** One part of a streamed answer ("chunk" message), handed to the request's onChunk. */
export interface ChunkMessage {
  type: "chunk";
  id: number;
  what: string;
  arrays?: ArrayDescriptor[];
  [field: string]: unknown;
}

export interface Progress {
  done: number;
  total: number;
}

export interface RequestOptions {
  /**
   * Reject when the kernel said nothing about the request (no chunk, progress or answer) for this
   * many milliseconds (default: the client's).
   */
  timeoutMs?: number;
  /**
   * Called with each streamed part of a live request, in order, before the final response. Never
   * called for a stale request. If it throws, the request rejects with that error.
   */
  onChunk?: (msg: ChunkMessage, arrays: Record<string, DecodedArray>) => void;
}

/** What a view hands back for the kernel's `{"type": "snapshot"}` message. */
export interface Snapshot {
  /** What was rendered ("overview", "head", "matrix", ...); not "panel", which names an Explorer's panel. */
  shown: string;
  /** The PNG file's bytes. */
  png: ArrayBuffer;
}

export interface ClientOptions {
  /** Default timeout of a request in milliseconds (120 s). */
  timeoutMs?: number;
}

interface Pending {
  slot: string;
  what: string;
  resolve: (r: Response | null) => void;
  reject: (e: Error) => void;
  onProgress: ((p: Progress) => void) | undefined;
  onChunk: RequestOptions["onChunk"];
  timeoutMs: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

// Ids are unique across every client of this module: two views of one model share the model's
// messages, so each must recognise only its own answers.
let nextId = 1;

export class Client {
  private readonly pending = new Map<number, Pending>();
  private readonly slots = new Map<string, number>();
  private readonly timeoutMs: number;
  private disposed = false;
  private snapshotHandler: (() => Promise<Snapshot>) | undefined;
  private readonly listener = (msg: unknown, buffers: Buffers | undefined): void => this.receive(msg, buffers ?? []);

  constructor(
    private readonly model: MessageModel,
    options: ClientOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 120_000;
    model.on("msg:custom", this.listener);
  }

  /**
   * Ask the kernel for `what`. Resolves with the response, or with null when a newer request in the
   * same slot (or dispose) made this one stale: the caller then does nothing. Rejects with the
   * kernel's message on an error reply, and on timeout.
   */
  request(
    slot: string,
    what: string,
    params: Record<string, unknown> = {},
    onProgress?: (p: Progress) => void,
    options: RequestOptions = {},
  ): Promise<Response | null> {
    if (this.disposed) return Promise.resolve(null);
    this.cancel(slot);
    const id = nextId++;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    return new Promise<Response | null>((resolve, reject) => {
      const entry: Pending = {
        slot,
        what,
        resolve,
        reject,
        onProgress,
        onChunk: options.onChunk,
        timeoutMs,
        timer: undefined,
      };
      this.pending.set(id, entry);
      this.slots.set(slot, id);
      this.arm(id, entry);
      try {
        // Params first, so they can never overwrite the protocol's own fields.
        this.model.send({ ...params, type: "request", id, what });
      } catch (e) {
        this.forget(id);
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  /**
   * Answer the kernel's `{"type": "snapshot", "id": n}` messages with `render()`'s PNG:
   * `{"type": "snapshot", "id": n, "shown": ...}` plus the bytes as the one buffer. When render fails
   * the answer carries `error` (the message) and no buffer. Replaces an earlier handler.
   */
  onSnapshot(render: (() => Promise<Snapshot>) | undefined): void {
    this.snapshotHandler = render;
  }

  /** Make the pending request of a slot stale (it resolves to null). */
  cancel(slot: string): void {
    const id = this.slots.get(slot);
    if (id === undefined) return;
    const entry = this.pending.get(id);
    this.forget(id);
    if (entry) this.model.dropped?.(id);
    entry?.resolve(null);
  }

  /** Whether a request in the slot is waiting for its answer. */
  isPending(slot: string): boolean {
    return this.slots.has(slot);
  }

  /** Stop listening; pending requests resolve to null. Call from render's cleanup. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.model.off("msg:custom", this.listener);
    for (const slot of [...this.slots.keys()]) this.cancel(slot);
  }

  /** (Re)start the request's silence timer: any word from the kernel about it resets it. */
  private arm(id: number, entry: Pending): void {
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    entry.timer = undefined;
    const timeoutMs = entry.timeoutMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) return;
    entry.timer = setTimeout(() => {
      if (this.pending.get(id) !== entry) return;
      this.forget(id);
      const seconds = Number((timeoutMs / 1000).toFixed(3));
      entry.reject(
        new Error(`no answer to "${entry.what}" after ${seconds} s: the kernel may be busy, stopped or disconnected`),
      );
    }, timeoutMs);
  }

  private answerSnapshot(id: unknown): void {
    const render = this.snapshotHandler;
    if (!render || this.disposed) return;
    const reply = (content: Record<string, unknown>, buffers?: ArrayBuffer[]): void => {
      if (this.disposed) return;
      try {
        this.model.send({ ...content, type: "snapshot", id }, undefined, buffers);
      } catch (e) {
        console.error("llmasos_widgets: could not send the snapshot", e);
      }
    };
    let pending: Promise<Snapshot>;
    try {
      pending = render();
    } catch (e) {
      pending = Promise.reject(e);
    }
    pending.then(
      ({ shown, png }) => reply({ shown }, [png]),
      (e: unknown) => reply({ shown: "", error: e instanceof Error ? e.message : String(e) }),
    );
  }

  private forget(id: number): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    this.pending.delete(id);
    if (this.slots.get(entry.slot) === id) this.slots.delete(entry.slot);
  }

  private receive(msg: unknown, buffers: Buffers): void {
    if (typeof msg !== "object" || msg === null) return;
    const m = msg as { type?: unknown; id?: unknown };
    if (m.type === "snapshot") {
      // Asked by the kernel, not an answer: its ids are the kernel's own.
      this.answerSnapshot(m.id);
      return;
    }
    if (typeof m.id !== "number") return;
    const entry = this.pending.get(m.id);
    if (!entry) return; // another view's, or stale: drop
    switch (m.type) {
      case "progress": {
        this.arm(m.id, entry);
        const p = msg as { done?: unknown; total?: unknown };
        if (entry.onProgress && typeof p.done === "number" && typeof p.total === "number") {
          try {
            entry.onProgress({ done: p.done, total: p.total });
          } catch (e) {
            console.error("llmasos_widgets: progress callback failed", e);
          }
        }
        return;
      }
      case "chunk": {
        this.arm(m.id, entry);
        if (!entry.onChunk) return;
        let arrays: Record<string, DecodedArray>;
        try {
          arrays = decodeArrays(msg as ChunkMessage, buffers);
        } catch (e) {
          this.forget(m.id);
          const reason = e instanceof Error ? e.message : String(e);
          entry.reject(new Error(`could not decode a part of the answer to "${entry.what}": ${reason}`));
          return;
        }
        try {
          entry.onChunk(msg as ChunkMessage, arrays);
        } catch (e) {
          this.forget(m.id);
          entry.reject(e instanceof Error ? e : new Error(String(e)));
        }
        return;
      }
      case "response": {
        this.forget(m.id);
        let arrays: Record<string, DecodedArray>;
        try {
          arrays = decodeArrays(msg as ResponseMessage, buffers);
        } catch (e) {
          const reason = e instanceof Error ? e.message : String(e);
          entry.reject(new Error(`could not decode the answer to "${entry.what}": ${reason}`));
          return;
        }
        entry.resolve({ msg: msg as ResponseMessage, arrays });
        return;
      }
      case "error": {
        this.forget(m.id);
        const message = (msg as { message?: unknown }).message;
        entry.reject(new Error(typeof message === "string" && message ? message : `the kernel failed on "${entry.what}"`));
        return;
      }
    }
  }
}
