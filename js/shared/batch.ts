// Several trait changes arrive together (a click sets the token and the layer; the text changes
// tokens, token_ids, offsets...): a view redraws once for all of them, in the microtask after the last.

/** A function that runs `run` once, in a microtask, however many times it is called before then. */
export function batched(run: () => void): () => void {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      run();
    });
  };
}
