// The model an Explorer's panel sees: the text and the selection it follows are the Explorer's own
// traits (so one click fires every panel's change event, with no kernel round trip), its other traits
// are its entry in the Explorer's `panel_states`, and its messages travel through the Explorer's comm
// tagged with the panel's name. It speaks the same interface as anywidget's model (ViewModel).

import { type Callback, Events } from "../shared/events";
import { TEXT_TRAITS } from "../shared/tokens";
import type { ViewModel } from "../shared/view";
import type { Hub } from "./store";


export class PanelModel extends Events implements ViewModel {
  private readonly shared: Set<string>;
  /** The panel's own traits as the page knows them: the kernel's, overlaid with values set here. */
  private state: Record<string, unknown>;
  private readonly dirty = new Set<string>();
  private readonly hostHandlers: [string, Callback][] = [];

  constructor(
    private readonly host: ViewModel,
    readonly name: string,
    links: readonly string[],
    private readonly hub?: Hub,
  ) {
    super();
    this.shared = new Set([...TEXT_TRAITS, ...links]);
    this.state = { ...this.kernelState() };
    for (const key of this.shared) this.hostOn(`change:${key}`, () => this.emit(`change:${key}`));
    this.hostOn("change:panel_states", () => this.replace(this.kernelState()));
    this.hostOn("msg:custom", (msg: Record<string, unknown>, buffers: DataView[]) => {
      if (msg?.["panel"] !== this.name) return;
      if (msg["type"] === "panel_state") this.replace((msg["state"] as Record<string, unknown>) ?? {});
      else this.emit("msg:custom", msg, buffers);
    });
    const detach = hub?.attach(name, (msg, buffers) => this.emit("msg:custom", msg, buffers));
    if (detach) this.detach = detach;
  }

  private detach: () => void = () => undefined;

  get(key: string): any {
    return this.shared.has(key) ? this.host.get(key) : this.state[key];
  }

  set(key: string, value: unknown): void {
    if (this.shared.has(key)) {
      this.host.set(key, value);
      return;
    }
    if (this.state[key] === value) return;
    this.state[key] = value;
    this.dirty.add(key);
    this.emit(`change:${key}`);
  }

  save_changes(): void {
    this.host.save_changes();
    if (this.dirty.size === 0) return;
    const changes = Object.fromEntries(Array.from(this.dirty, (k) => [k, this.state[k]]));
    this.dirty.clear();
    this.host.send({ type: "set", panel: this.name, changes });
  }

  send(content: any, callbacks?: any, buffers?: ArrayBuffer[] | ArrayBufferView[]): void {
    if (this.hub) this.hub.send(this.name, content, callbacks, buffers);
    else this.host.send({ ...content, panel: this.name }, callbacks, buffers);
  }

  dropped(id: number): void {
    this.hub?.dropped(id);
  }

  /** Stop listening to the host (the panel was folded or the Explorer removed). */
  dispose(): void {
    for (const [event, fn] of this.hostHandlers) this.host.off(event, fn);
    this.detach();
    this.off();
  }

  private kernelState(): Record<string, unknown> {
    const all = (this.host.get("panel_states") ?? {}) as Record<string, Record<string, unknown>>;
    return all[this.name] ?? {};
  }

  /** Take the kernel's state; fire a change for each trait whose value the page did not already have. */
  private replace(next: Record<string, unknown>): void {
    const before = this.state;
    this.state = { ...next };
    for (const key of new Set([...Object.keys(before), ...Object.keys(next)])) {
      if (JSON.stringify(before[key]) !== JSON.stringify(next[key])) this.emit(`change:${key}`);
    }
  }

  private hostOn(event: string, fn: Callback): void {
    this.host.on(event, fn);
    this.hostHandlers.push([event, fn]);
  }

}
