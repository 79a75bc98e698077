/**
 * Exact threshold tests on ratios of integers, for kernels that must decide like PyTorch's CPU
 * code: `float32(a / b) > t` (box IoU in torchvision's NMS) or `float32(a / b) >= t` (the stability
 * score filter), with a, b counts or areas (whole numbers in u32) and t a Python float (a double).
 *
 * Why not divide in WGSL: its f32 division may be off by 2.5 ulp, and these ratios land exactly on
 * thresholds often enough to matter (two boxes 10x20 and 10x19: IoU 19/20, which PyTorch rounds to
 * 0.949999988 and does not suppress at 0.95). So the threshold is turned, on the CPU, into the
 * exact rational boundary of the rounding: float32 rounding is monotone, so the set of ratios
 * q = a / b (0 <= q <= 1) that pass is q > mid or q >= mid, where mid is the midpoint between the
 * smallest float32 that passes and the float32 below it (a tie rounds to the even one). mid has at
 * most 26 significant bits: mid = m / 2^e with m odd, and the test is the integer comparison
 * a * 2^e against m * b, done with a 64-bit product in two u32 words.
 */
import { memoWGSL } from './util.js';

/** How a ratio test reads: never true, true whenever b > 0, or the comparison with m / 2^e. */
export type RatioTest =
  | { kind: 'never' }
  | { kind: 'always' }
  | { kind: 'compare'; m: number; e: number; inclusive: boolean };

const F32 = new Float32Array(1), U32 = new Uint32Array(F32.buffer);

/** The next float32 above a non-negative float32 value (or below, with `down`). */
function stepF32(x: number, down = false): number {
  F32[0] = x;
  if (x === 0) return down ? 0 : 1.401298464324817e-45;
  U32[0] = U32[0]! + (down ? -1 : 1);
  return F32[0];
}

/** The test `float32(a / b) OP t` for whole numbers 0 <= a <= b, b > 0 (b = 0 always fails: NaN). */
export function ratioTest(t: number, op: '>' | '>='): RatioTest {
  if (Number.isNaN(t)) return { kind: 'never' };
  if (t < 0 || (t === 0 && op === '>=')) return { kind: 'always' };
  // F: the smallest float32 that passes
  const r = Math.fround(t);
  let F = op === '>' ? (r > t ? r : stepF32(r)) : (r >= t ? r : stepF32(r));
  if (!Number.isFinite(F) || F > 1) return { kind: 'never' };
  if (t === 0) F = stepF32(0); // '>' 0: the smallest positive float32
  const below = stepF32(F, true);
  const mid = (below + F) / 2; // exact in a double
  let m = mid, e = 0;
  while (!Number.isInteger(m)) { m *= 2; e++; }
  F32[0] = F;
  const evenF = (U32[0]! & 1) === 0;
  return { kind: 'compare', m, e, inclusive: evenF };
}

/**
 * WGSL of `fn NAME(a: u32, b: u32) -> bool`, the test above with its constants compiled in (one
 * pipeline per threshold; thresholds are per generator, not per frame).
 */
export const ratioTestWGSL = memoWGSL((name: string, test: RatioTest): string => {
  if (test.kind !== 'compare') {
    return `fn ${name}(a: u32, b: u32) -> bool { return ${test.kind === 'always' ? 'b > 0u' : 'false'}; }\n`;
  }
  const { m, e, inclusive } = test;
  // p = m * b as (lo, hi); q = p >> e, rem = p mod 2^e; a * 2^e > p <=> a > q; == <=> a == q && rem == 0
  let qr: string;
  if (e === 0) qr = 'let qlo = p.x; let qhi = p.y; let rem0 = true;';
  else if (e < 32) qr = `let qlo = (p.x >> ${e}u) | (p.y << ${32 - e}u); let qhi = p.y >> ${e}u; let rem0 = (p.x & ${(2 ** e - 1) >>> 0}u) == 0u;`;
  else if (e === 32) qr = 'let qlo = p.y; let qhi = 0u; let rem0 = p.x == 0u;';
  else if (e < 64) qr = `let qlo = p.y >> ${e - 32}u; let qhi = 0u; let rem0 = p.x == 0u && (p.y & ${(2 ** (e - 32) - 1) >>> 0}u) == 0u;`;
  else qr = 'let qlo = 0u; let qhi = 0u; let rem0 = p.x == 0u && p.y == 0u;';
  return /* wgsl */ `
// float32(a / b) passes the threshold <=> a * 2^${e} ${inclusive ? '>=' : '>'} ${m} * b (exact)
fn ${name}(a: u32, b: u32) -> bool {
  if (b == 0u) { return false; }
  let p = mul_wide_u32(${m}u, b);
  ${qr}
  if (qhi != 0u) { return false; }
  return a > qlo${inclusive ? ' || (a == qlo && rem0)' : ''};
}
`;
});

/** WGSL of `mul_wide_u32(x, y) -> vec2u`: the 64-bit product (lo, hi) of two u32, from 16-bit halves. */
export const MUL_WIDE_WGSL = /* wgsl */ `
fn mul_wide_u32(x: u32, y: u32) -> vec2u {
  let xl = x & 0xffffu; let xh = x >> 16u;
  let yl = y & 0xffffu; let yh = y >> 16u;
  let ll = xl * yl;
  let lh = xl * yh;
  let hl = xh * yl;
  let hh = xh * yh;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  let lo = (ll & 0xffffu) | (mid << 16u);
  let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
  return vec2u(lo, hi);
}
`;

/** The same test on the CPU (reference for tests): exact, through BigInt. */
export function ratioPasses(test: RatioTest, a: number, b: number): boolean {
  if (b === 0) return false;
  if (test.kind === 'never') return false;
  if (test.kind === 'always') return true;
  const lhs = BigInt(a) << BigInt(test.e), rhs = BigInt(test.m) * BigInt(b);
  return lhs > rhs || (test.inclusive && lhs === rhs);
}
