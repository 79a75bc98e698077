/**
 * Comparing our outputs with the reference tensors (the goldens), with the bounds of
 * /work/shared/golden/README.md:
 *
 * - float tensors: max |ours - ref| <= 1e-3 * max |ref| + 1e-4 when the case's weights are f32,
 *   <= 3e-3 * max |ref| when they are f16 (the reference computed in f32 on f16 values);
 * - binary masks (`*.masks_bits`, packed 8 pixels a byte along the last axis, first pixel in the
 *   high bit): at least 99.9% of pixels equal, and each differing pixel lies where the logit is
 *   within 1e-2 of zero. The reference's upsampled logits are not stored, so the check uses ours
 *   (they match the reference's to the float bound); without logits only the 99.9% rule is applied;
 * - memories the reference stores in bfloat16 (`video.*.maskmem_features`, the spatial tokens of
 *   `module.memory_attention.in.memory`): a value within float noise of a bfloat16 rounding
 *   boundary may round either way, one bfloat16 step (2^-7 of its magnitude at most) apart, so
 *   those elements get 2^-7 * |ref| on top of the float bound (`BFLOAT16_STEP`).
 */
import type { SafetensorsFile } from '../io/safetensors.js';

/** Which float bound applies: `f32` for f32-weight cases, `f16` for f16-weight cases. */
export type ToleranceRule = 'f32' | 'f16';

/** The rule for a case, from its weights file: any F16/BF16 weight means the f16 rule. */
export function toleranceRule(weights: SafetensorsFile): ToleranceRule {
  return weights.names().some((n) => {
    const dt = weights.info(n).dtype;
    return dt === 'F16' || dt === 'BF16';
  }) ? 'f16' : 'f32';
}

/** The bound on max |ours - ref| for a reference whose largest magnitude is `maxAbsRef`. */
export function floatBound(maxAbsRef: number, rule: ToleranceRule): number {
  return rule === 'f16' ? 3e-3 * maxAbsRef : 1e-3 * maxAbsRef + 1e-4;
}

/** One bfloat16 step relative to a value's magnitude (8 significant bits: 2^-7 at most). */
export const BFLOAT16_STEP = 2 ** -7;

export interface FloatRow {
  kind: 'float';
  name: string;
  maxAbsErr: number;
  maxAbsRef: number;
  /**
   * The bound. With a per-element part (bfloat16 memories), the bound of the element nearest to
   * (or furthest past) its own bound.
   */
  bound: number;
  /** Elements [0, n) had 2^-7 * |ref| added to their bound (bfloat16 memories). */
  bfloat16Elements?: number;
  pass: boolean;
  /** Why the row failed when it is not about the error's size (length mismatch, missing output...). */
  note?: string;
}

export interface MaskRow {
  kind: 'mask';
  name: string;
  /** Pixels where ours and the reference differ, out of `total`. */
  differing: number;
  total: number;
  /** Largest |logit| at a differing pixel (NaN when no logits were given or none differ). */
  maxAbsLogitAtDiff: number;
  /** The bounds applied: minimum fraction of equal pixels, |logit| allowed at a differing pixel. */
  minEqual: number;
  nearZero: number;
  pass: boolean;
  note?: string;
}

export type GoldenRow = FloatRow | MaskRow;

export interface CompareOptions {
  /**
   * The first `bfloat16Elements` elements hold values the reference stored in bfloat16: each gets
   * BFLOAT16_STEP * |ref| added to the float bound (default 0: none).
   */
  bfloat16Elements?: number;
}

/**
 * Compares float tensors element by element. `bound` is either the bound itself or the rule to
 * derive it from max |ref|. NaN or infinity in ours fails (maxAbsErr = Infinity).
 */
export function compare(name: string, ours: ArrayLike<number>, ref: ArrayLike<number>, bound: number | ToleranceRule, o: CompareOptions = {}): FloatRow {
  let maxAbsRef = 0;
  for (let i = 0; i < ref.length; i++) maxAbsRef = Math.max(maxAbsRef, Math.abs(ref[i]!));
  const b = typeof bound === 'number' ? bound : floatBound(maxAbsRef, bound);
  const nb = Math.max(0, Math.min(o.bfloat16Elements ?? 0, ref.length));
  const extra = nb > 0 ? { bfloat16Elements: nb } : {};
  if (ours.length !== ref.length) {
    return { kind: 'float', name, maxAbsErr: Infinity, maxAbsRef, bound: b, pass: false, ...extra, note: `length ${ours.length}, reference ${ref.length}` };
  }
  let maxAbsErr = 0;
  // the element with the largest error relative to its own bound decides (and is reported)
  let worstRatio = 0, worstBound = b, pass = true;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(ours[i]! - ref[i]!);
    if (!(d <= maxAbsErr)) maxAbsErr = Number.isFinite(d) ? d : Infinity; // NaN and inf count as infinite
    if (nb === 0) continue;
    const bi = b + (i < nb ? BFLOAT16_STEP * Math.abs(ref[i]!) : 0);
    if (!(d <= bi)) pass = false;
    const ratio = Number.isFinite(d) ? (bi > 0 ? d / bi : d > 0 ? Infinity : 0) : Infinity;
    if (ratio > worstRatio) { worstRatio = ratio; worstBound = bi; }
  }
  if (nb === 0) return { kind: 'float', name, maxAbsErr, maxAbsRef, bound: b, pass: maxAbsErr <= b };
  return { kind: 'float', name, maxAbsErr, maxAbsRef, bound: worstBound, pass, ...extra };
}

/** The number of elements of a shape. */
const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/**
 * Unpacks `masks_bits`: `shape` is the boolean mask's shape [..., W]; `bytes` holds
 * prod(shape[:-1]) rows of ceil(W/8) bytes, pixel x at byte x >> 3, bit 7 - (x & 7).
 * Returns 0/1 per pixel, row-major in `shape`.
 */
export function unpackBits(bytes: Uint8Array, shape: readonly number[]): Uint8Array {
  const w = shape[shape.length - 1] ?? 1;
  const rows = numel(shape.slice(0, -1));
  const bpr = Math.ceil(w / 8);
  if (bytes.length !== rows * bpr) {
    throw new Error(`unpackBits: ${bytes.length} bytes do not hold [${shape}] (${rows} rows of ${bpr} bytes)`);
  }
  const out = new Uint8Array(rows * w);
  for (let r = 0; r < rows; r++) {
    for (let x = 0; x < w; x++) out[r * w + x] = (bytes[r * bpr + (x >> 3)]! >> (7 - (x & 7))) & 1;
  }
  return out;
}

/** The inverse of `unpackBits` (any nonzero value is a set pixel); for tests and tools. */
export function packBits(mask: ArrayLike<number>, shape: readonly number[]): Uint8Array {
  const w = shape[shape.length - 1] ?? 1;
  const rows = numel(shape.slice(0, -1));
  const bpr = Math.ceil(w / 8);
  if (mask.length !== rows * w) throw new Error(`packBits: ${mask.length} values for [${shape}]`);
  const out = new Uint8Array(rows * bpr);
  for (let r = 0; r < rows; r++) {
    for (let x = 0; x < w; x++) if (mask[r * w + x]) out[r * bpr + (x >> 3)]! |= 0x80 >> (x & 7);
  }
  return out;
}

export interface MaskCompareOptions {
  /** Our logits at the mask's resolution (same layout as `ours`); enables the near-zero check. */
  logits?: ArrayLike<number>;
  /** Largest |logit| allowed at a differing pixel (default 1e-2). */
  nearZero?: number;
  /** Smallest fraction of equal pixels (default 0.999). */
  minEqual?: number;
}

/**
 * Compares our binary mask (0/1 per pixel, shape [..., W]) with the reference's packed bits of
 * stored shape `refShape` [..., ceil(W/8)]. W is taken from the size of `ours`.
 */
export function compareMasks(name: string, ours: ArrayLike<number>, refBits: Uint8Array, refShape: readonly number[], opts: MaskCompareOptions = {}): MaskRow {
  const nearZero = opts.nearZero ?? 1e-2;
  const minEqual = opts.minEqual ?? 0.999;
  const rows = numel(refShape.slice(0, -1));
  const bpr = refShape[refShape.length - 1] ?? 1;
  const base = { kind: 'mask' as const, name, minEqual, nearZero };
  const w = rows > 0 ? ours.length / rows : 0;
  if (!Number.isInteger(w) || Math.ceil(w / 8) !== bpr) {
    return { ...base, differing: NaN, total: ours.length, maxAbsLogitAtDiff: NaN, pass: false,
      note: `${ours.length} pixels do not fit the reference's ${rows} rows of ${bpr} bytes` };
  }
  if (opts.logits && opts.logits.length !== ours.length) {
    return { ...base, differing: NaN, total: ours.length, maxAbsLogitAtDiff: NaN, pass: false,
      note: `${opts.logits.length} logits for ${ours.length} pixels` };
  }
  const ref = unpackBits(refBits, [...refShape.slice(0, -1), w]);
  let differing = 0;
  let maxAbsLogitAtDiff = NaN;
  for (let i = 0; i < ref.length; i++) {
    if ((ours[i] ? 1 : 0) === ref[i]) continue;
    differing++;
    if (opts.logits) {
      const l = Math.abs(opts.logits[i]!);
      if (!(l <= maxAbsLogitAtDiff)) maxAbsLogitAtDiff = Number.isNaN(l) ? Infinity : l;
    }
  }
  const total = ref.length;
  const equalOk = total === 0 || (total - differing) / total >= minEqual;
  const logitOk = differing === 0 || !opts.logits || maxAbsLogitAtDiff <= nearZero;
  return { ...base, differing, total, maxAbsLogitAtDiff, pass: equalOk && logitOk,
    ...(opts.logits || differing === 0 ? {} : { note: 'no logits given: near-zero check skipped' }) };
}

/** Compares our logits (mask = logit > 0) with the reference's packed mask. */
export function compareMaskLogits(name: string, logits: ArrayLike<number>, refBits: Uint8Array, refShape: readonly number[], opts: Omit<MaskCompareOptions, 'logits'> = {}): MaskRow {
  const mask = new Uint8Array(logits.length);
  for (let i = 0; i < logits.length; i++) mask[i] = logits[i]! > 0 ? 1 : 0;
  return compareMasks(name, mask, refBits, refShape, { ...opts, logits });
}

/** A row that failed before any comparison (the stage threw, or did not output the tensor). */
export function failedRow(name: string, note: string): FloatRow {
  return { kind: 'float', name, maxAbsErr: NaN, maxAbsRef: NaN, bound: NaN, pass: false, note };
}

const sci = (v: number): string => (Number.isNaN(v) ? '-' : v === Infinity ? 'inf' : v.toExponential(2));

/** The rows as an aligned text table: name, max abs err, max |ref|, bound, pass/FAIL (and notes). */
export function formatTable(rows: readonly GoldenRow[]): string {
  const head = ['tensor', 'max abs err', 'max |ref|', 'bound', 'result'];
  const cells = rows.map((r) => {
    let cols: string[];
    if (r.kind === 'float') {
      cols = [r.name, sci(r.maxAbsErr), sci(r.maxAbsRef), `${r.bfloat16Elements ? 'bf16 ' : ''}${sci(r.bound)}`];
    } else {
      const pct = r.total > 0 ? ((100 * r.differing) / r.total).toPrecision(2) : '0';
      cols = [
        r.name,
        Number.isNaN(r.differing) ? '-' : `${r.differing}/${r.total} px (${pct}%)`,
        Number.isNaN(r.maxAbsLogitAtDiff) ? '-' : `|logit| ${sci(r.maxAbsLogitAtDiff)}`,
        `<=${(100 * (1 - r.minEqual)).toPrecision(2)}% px, |logit|<=${r.nearZero}`,
      ];
    }
    cols.push((r.pass ? 'pass' : 'FAIL') + (r.note ? `  (${r.note})` : ''));
    return cols;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((s, i) => (i === 0 || i === c.length - 1 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!)))
    .join('  ').trimEnd();
  const failed = rows.filter((r) => !r.pass).length;
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line),
    `${rows.length} compared, ${rows.length - failed} passed, ${failed} failed`].join('\n');
}
