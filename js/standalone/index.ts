// The runtime of an exported HTML file (save_html): it mounts each recorded view with a stand-in for
// anywidget's model that answers the view's requests from responses recorded at export, instead of
// a kernel. The views' code is the same bundle a notebook loads; nothing is fetched from a network.

import { setText, visibleText } from "../shared/tokens";
import { replayKey, ReplayModel, type Recorded } from "./replay";

/** What the page holds for one view (see _export.py, pack): gzip of a uint32 length, that much JSON, then buffers. */
interface ExportedView {
  /** The view's bundle (an ES module exporting `{ render }`), base64 of its UTF-8 source. */
  esm: string;
  /** The view's stylesheet (its _css). */
  css?: string;
  /** The view's synced traits. */
  state: Record<string, unknown>;
  /** Recorded answers by request key (see replayKey). */
  recorded: Record<string, Recorded>;
}

function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The view's JSON and the binary part its answers' buffers point into. */
async function unpack(b64: string): Promise<[ExportedView, Uint8Array]> {
  const stream = new Blob([decodeBase64(b64)]).stream().pipeThrough(new DecompressionStream("gzip"));
  const raw = new Uint8Array(await new Response(stream).arrayBuffer());
  const n = new DataView(raw.buffer, raw.byteOffset, 4).getUint32(0, true);
  const data = JSON.parse(new TextDecoder().decode(raw.subarray(4, 4 + n))) as ExportedView;
  return [data, raw.subarray(4 + n)];
}

async function mount(host: HTMLElement, packed: string): Promise<void> {
  const [data, binary] = await unpack(packed);
  if (data.css) {
    const style = document.createElement("style");
    style.textContent = data.css;
    document.head.append(style);
  }
  const source = new TextDecoder().decode(decodeBase64(data.esm));
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    const module = await import(/* @vite-ignore */ url);
    const widget = module.default ?? module;
    const model = new ReplayModel(data.state, data.recorded, binary);
    await widget.render({ model, el: host });
  } finally {
    URL.revokeObjectURL(url);
  }
}

/**
 * The page's own text, written by Python (its title, given to save_html, and the notes on what each
 * view recorded), shown by `visibleText` as the views show theirs.
 */
export function showPageText(doc: Document = document): void {
  doc.title = visibleText(doc.title, "text");
  for (const host of Array.from(doc.querySelectorAll("body > h1, .lw-export-note"))) {
    const walker = doc.createTreeWalker(host, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) node.nodeValue = visibleText(node.nodeValue ?? "", "text");
  }
}

/** Mount every exported view of the page; a view that fails says why in its place. */
export async function mountAll(doc: Document = document): Promise<void> {
  showPageText(doc);
  for (const script of Array.from(doc.querySelectorAll<HTMLScriptElement>("script.lw-export"))) {
    const host = doc.getElementById(script.dataset.host ?? "");
    if (!host) continue;
    try {
      await mount(host, (script.textContent ?? "").trim());
      host.dataset.state = "ready";
    } catch (e) {
      setText(host, `this view could not be shown: ${e instanceof Error ? e.message : String(e)}`);
      host.dataset.state = "error";
    }
  }
}

export { replayKey };
void mountAll();
