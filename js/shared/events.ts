// Listeners kept as anywidget's model keeps them (on, off, emit): shared by the models that stand in
// for it, an exported file's ReplayModel and an Explorer panel's PanelModel.

export type Callback = (...args: any[]) => void;

export class Events {
  private readonly listeners = new Map<string, Set<Callback>>();

  on(event: string, callback: Callback): void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(callback);
  }

  /** Remove one listener, an event's listeners, or (no event) all of them. */
  off(event?: string | null, callback?: Callback | null): void {
    if (!event) this.listeners.clear();
    else if (!callback) this.listeners.delete(event);
    else this.listeners.get(event)?.delete(callback);
  }

  protected emit(event: string, ...args: unknown[]): void {
    for (const callback of Array.from(this.listeners.get(event) ?? [])) callback(...args);
  }
}
