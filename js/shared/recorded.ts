// The key a request is recorded and cached by: an exported file's ReplayModel replays by it, and an
// Explorer's page cache (js/explorer/store.ts) files the kernel's answers by it. Python writes the same
// string (views/export.py, request_key).

/**
 * The key of a request: its `what` and parameters (not its id), keys sorted, as compact JSON.
 * Python writes the same string (json.dumps(..., sort_keys=True, separators=(",", ":"))).
 */
export function replayKey(content: Record<string, unknown>): string {
  const params: Record<string, unknown> = {};
  for (const key of Object.keys(content).sort()) {
    if (key === "type" || key === "id") continue;
    params[key] = content[key];
  }
  return JSON.stringify(params);
}
