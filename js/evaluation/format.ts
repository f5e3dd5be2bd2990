// How EvaluationView writes its numbers and picks its colours: pure functions, tested in node (format.test.ts).

/** A number with 3 significant digits ("0.00312", "0.489", "-1.20"); "n/a" for NaN; never a negative zero. */
export function fmt(v: number): string {
  if (Number.isNaN(v)) return "n/a";
  if (!Number.isFinite(v)) return v > 0 ? "+inf" : "-inf";
  const text = v.toPrecision(3);
  return Number(text) === 0 ? "0" : text.replace(/e\+?/, "e");
}

/** "mean [low, high]" as `fmt` writes each. */
export function intervalText(mean: number, low: number, high: number): string {
  return `${fmt(mean)} [${fmt(low)}, ${fmt(high)}]`;
}

/** A p-value as "p = 0.125", "p < 0.001"; "n/a" for NaN. */
export function pValueText(p: number): string {
  if (Number.isNaN(p)) return "n/a";
  return p < 0.001 ? "p < 0.001" : `p = ${p.toPrecision(2)}`;
}

/**
 * What a paired difference (a method minus the reference) says: "better" or "worse", in the direction the
 * metric rewards, only when the paired test rejects no difference at `alpha` (a bootstrap interval over a
 * few prompts can leave out 0 while the exact test cannot reject: 3 prompts give p >= 0.25); else "no clear
 * difference".
 */
export function verdict(diff: number, p: number, higherBetter: boolean, alpha = 0.05): string {
  if (!(Number.isFinite(diff) && Number.isFinite(p)) || p >= alpha || diff === 0) return "no clear difference";
  return (diff > 0) === higherBetter ? "better" : "worse";
}

/** Index of the best finite value (highest or lowest); the first of equals; -1 when none is finite. */
export function bestIndex(values: ArrayLike<number>, higherBetter: boolean): number {
  let best = -1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    if (best < 0 || (higherBetter ? v > values[best]! : v < values[best]!)) best = i;
  }
  return best;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
/** The floor's colour: grey, drawn dashed. */
export const FLOOR_COLOUR = "#7f7f7f";

/** A method's line colour: the palette in method order, skipping the floor, which is grey. */
export function methodColour(methods: readonly string[], index: number, floor: string): string {
  if (methods[index] === floor) return FLOOR_COLOUR;
  const before = methods.slice(0, index).filter((m) => m !== floor).length;
  return PALETTE[before % PALETTE.length]!;
}
