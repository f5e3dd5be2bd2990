// A stand-in for anywidget's model in an exported file: synced traits live in the page (a view's
// clicks still change them and fire change events), and requests are answered from the responses
// recorded at export. A request nobody recorded gets an error message the view shows in place.

import { Events } from "../shared/events";
import { replayKey } from "../shared/recorded";

export { replayKey };

/** One recorded answer: the messages the kernel sent (chunks, progress, then response or error). */
export interface Recorded {
  /** Each message's buffers as [offset, length] in the file's binary part. */
  messages: { content: Record<string, unknown>; buffers: [number, number][] }[];
}

export class ReplayModel extends Events {
  private readonly state: Record<string, unknown>;

  constructor(
    state: Record<string, unknown>,
    private readonly recorded: Record<string, Recorded>,
    private readonly binary: Uint8Array,
  ) {
    super();
    this.state = { ...state };
  }

  get(key: string): any {
    return this.state[key];
  }

  set(key: string, value: unknown): void {
    if (this.state[key] === value) return;
    this.state[key] = value;
    this.emit(`change:${key}`);
  }

  save_changes(): void {}

  /** Answer a view's request, later (as a kernel would), from what was recorded. */
  send(content: Record<string, unknown>): void {
    if (content?.["type"] === "batch") {
      // An Explorer's click: acknowledged, then each request answered as if sent alone.
      setTimeout(() => this.emit("msg:custom", { type: "ack", batch: content["batch"] }, []), 0);
      for (const request of (content["requests"] as Record<string, unknown>[] | undefined) ?? []) this.send(request);
      return;
    }
    if (content?.["type"] === "prefetch") {
      // Everything this file answers is already in the page.
      setTimeout(() => this.emit("msg:custom", { type: "stored", entries: [], done: true }, []), 0);
      return;
    }
    if (content?.["type"] !== "request") return; // snapshots and the like need a kernel
    const id = content["id"];
    const record = this.recorded[replayKey(content)];
    // An Explorer's panel tags its requests; the answer must carry the tag back to that panel.
    const tag = content["panel"] === undefined ? {} : { panel: content["panel"] };
    setTimeout(() => {
      if (!record) {
        const message = `not recorded in this file: ${String(content["what"])} ${replayKey(content)}; open the notebook for it`;
        this.emit("msg:custom", { type: "error", id, what: content["what"], message, ...tag }, []);
        return;
      }
      for (const m of record.messages) {
        const buffers = m.buffers.map(([offset, length]) => new DataView(this.binary.buffer, this.binary.byteOffset + offset, length));
        this.emit("msg:custom", { ...m.content, id, ...tag }, buffers);
      }
    }, 0);
  }

}
