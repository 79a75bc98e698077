import type { GpuContext } from '../gpu/context.js';
import { f32ToF16Array } from '../gpu/half.js';
import type { Tensor } from '../gpu/tensor.js';
import { bucket4, choose, randomValues, softwareDefaults, type KernelFamily } from './choice.js';
import {
  GEMM_TILE_NAMES, GEMM_TILES, gemmTiledWGSL, load4WGSL, tileCount, tileInvocations, tileWorkgroupBytes, type GemmTileName,
} from './gemm_tiled.js';
import { f32lit, grid1d, memoWGSL } from './util.js';

/**
 * Matrix multiplies: `linear` (torch.nn.Linear with its bias, activation and residual fused into
 * the epilogue) and batched `matmul` (attention scores, attention-weighted values and the like).
 *
 * Both compute out[b] = epilogue(alpha * A[b] · op(B[b])), where op(B) is Bᵀ for B stored [N, K]
 * (a Linear weight, or the keys in q·kᵀ) and B itself for B stored [K, N], with one of the
 * candidates of the `matmul` family (MATMUL below; the context's kernel table picks per adapter and
 * shape class, see choice.ts):
 *   'direct'       this file's kernel, shaped for lavapipe (below);
 *   'tiled32', 'tiled64', 'tiled128x64'
 *                  the GPU-shaped workgroup-memory GEMM of gemm_tiled.ts in its three tile shapes.
 * All accumulate in f32. With half-precision inputs (an f16 weight under precision 'f16', or
 * attention's f16 operands) A and B are rounded to f16 and the products summed in f32.
 *
 * The 'direct' kernel, tuned on Mesa lavapipe (a workgroup runs on one CPU thread; 8 consecutive invocations
 * share one 256-bit SIMD register): a workgroup is exactly WX = 8 threads and computes a
 * TM x (WX*TN) output tile; thread `tx` owns rows m0..m0+TM-1 and columns n0 + tx + WX*j. Each K
 * step loads TM values of A (the same address in every lane) and TN values of B straight from the
 * storage buffers, and does TM*TN fused multiply-adds into registers.
 *
 * Measured alternatives that were slower here (1024x192x576, GFLOP per CPU-second):
 *   classic 8x8-thread workgroups staging A and B in workgroup memory (4x4 or 8x4 per thread,
 *   K tile 16/32): 1.0-1.6; 8-thread workgroup staging only A in workgroup memory: 1.6-2.1;
 *   direct 8x4: 3.6-4.1; direct with vec4 loads along K: 3.2-3.6; K loop unrolled by 2/4: slower
 *   (register spills); direct 8x8 (kept): ~5.4; direct 16x8: about the same as 8x8.
 * Rows and columns past M / N read clamped (valid) addresses and are not stored, so no bounds
 * checks sit in the inner loop.
 */

export type Activation = 'none' | 'gelu' | 'relu';

/** Tile shape of the kernel; exported so the benchmark can compare tilings. */
export interface MatmulTile {
  /** threads per workgroup, along N (the SIMD lanes on lavapipe) */
  wx: number;
  /** output rows per workgroup (every thread computes all of them) */
  tm: number;
  /** output columns per thread (strided by wx) */
  tn: number;
}

export const DEFAULT_TILE: MatmulTile = { wx: 8, tm: 8, tn: 8 };

interface KernelParams {
  batch: number;
  M: number;
  N: number;
  K: number;
  /** B stored [N, K] (true) or [K, N] (false) */
  transB: boolean;
  /** elements between consecutive B matrices (0: one B shared by the batch, as a Linear weight) */
  bStride: number;
  alpha: number;
  bias: boolean;
  activation: Activation;
  residual: boolean;
  tile: MatmulTile;
  /** B stored as f16 (a weight kept in half precision; widened to f32 as it is read) */
  bF16: boolean;
  /** A rounded to f16 as it is read (precision 'f16') */
  aHalf: boolean;
  /** B rounded to f16 as it is read (implied by bF16) */
  bHalf: boolean;
}

// ------------------------------------------------------------------------------------------------
// erf for the exact GELU. WGSL has no erf; this one has |error| < 2e-7 in f32 (see tests).
// Coefficients are a least-squares fit on Chebyshev nodes made for this library:
//   |x| < 1:      erf(x) = x * P(x^2)
//   1 <= |x| < 4: erf(x) = 1 - exp(-x^2) * Q(|x| - 2.5)   (Q fits erfcx, the scaled erfc)
//   |x| >= 4:     erf(x) = ±1 (erfc(4) = 1.5e-8)
// ------------------------------------------------------------------------------------------------

export const ERF_P = [1.12837913, -0.376123498, 0.112803644, -0.0267163851, 0.00492327767, -0.000565410586];
export const ERF_Q = [
  0.210806358, -0.0743476009, 0.0249382037, -0.0079993456, 0.00246598236, -0.000738997568,
  0.00021297208, -5.35858091e-05, 1.43536626e-05, -6.3860857e-06, 1.67180178e-06,
];

const horner = (coef: readonly number[], v: string): string =>
  coef.slice(0, -1).reduceRight((acc, c) => `fma(${acc}, ${v}, ${f32lit(c)})`, f32lit(coef[coef.length - 1]!));

/** WGSL source of `fn erf_f32(x: f32) -> f32` (for other kernels that need erf too). */
export const ERF_WGSL = /* wgsl */ `
fn erf_f32(x: f32) -> f32 {
  let s = x * x;
  let small = x * ${horner(ERF_P, 's')};
  let t = min(abs(x), 4.0);
  let large = 1.0 - exp(-t * t) * ${horner(ERF_Q, '(t - 2.5)')};
  return select(sign(x) * large, small, abs(x) < 1.0);
}
`;

/** The same erf evaluated on the CPU in f32 steps (to check the coefficients without a GPU). */
export function erfF32(x: number): number {
  const f = Math.fround;
  const h = (coef: readonly number[], v: number): number =>
    coef.slice(0, -1).reduceRight((acc, c) => f(f(acc * v) + c), f(coef[coef.length - 1]!));
  const ax = Math.abs(x);
  if (ax < 1) return f(x * h(ERF_P, f(x * x)));
  const t = Math.min(ax, 4);
  return Math.sign(x) * f(1 - f(Math.exp(-f(t * t)) * h(ERF_Q, f(t - 2.5))));
}

/**
 * WGSL of `fn round16(x: f32) -> f32`: x rounded to the nearest f16 value (ties to even; f16's
 * subnormals and overflow to infinity included), with integer operations. Not f32(f16(x)) nor
 * unpack2x16float(pack2x16float(x)): Mesa folds both round trips away (inexact-math rules), which
 * would silently keep the f32 inputs.
 */
export const ROUND16_WGSL = /* wgsl */ `
fn round16(x: f32) -> f32 {
  let a = abs(x);
  if (a < 6.103515625e-5) { return round(x * 16777216.0) * 5.9604644775390625e-8; }   // f16 subnormals: steps of 2^-24
  let u = bitcast<u32>(x);
  let r = bitcast<f32>((u + 0xfffu + ((u >> 13u) & 1u)) & 0xffffe000u);                // 10 mantissa bits, ties to even
  return select(r, bitcast<f32>((u & 0x80000000u) | 0x7f800000u), a >= 65520.0);                 // overflow: ±inf
}
`;

const ACT_WGSL: Record<Activation, string> = {
  none: 'v',
  relu: 'max(v, 0.0)',
  // torch.nn.GELU() default (approximate='none'): x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
  gelu: '0.5 * v * (1.0 + erf_f32(v * 0.70710678118654752))',
};

// ------------------------------------------------------------------------------------------------
// kernel source
// ------------------------------------------------------------------------------------------------

/** What varies between calls of one kernel variant: read from a uniform buffer, not compiled in. */
interface Sizes {
  M: number; N: number; K: number; tilesM: number; tilesN: number; total: number; bStride: number; alpha: number;
}

function sizesOf(p: KernelParams): Sizes {
  const tilesM = Math.ceil(p.M / p.tile.tm), tilesN = Math.ceil(p.N / (p.tile.wx * p.tile.tn));
  return { M: p.M, N: p.N, K: p.K, tilesM, tilesN, total: tilesM * tilesN * p.batch, bStride: p.bStride, alpha: p.alpha };
}

/** The uniform block of `Sizes`, in the order of the WGSL struct `Sizes`. */
function sizesData(z: Sizes): Uint32Array {
  const u = new Uint32Array(8);
  u.set([z.M, z.N, z.K, z.tilesM, z.tilesN, z.total, z.bStride]);
  new Float32Array(u.buffer)[7] = z.alpha;
  return u;
}

/**
 * The kernel for one variant (layout of B, epilogue, tile, B's dtype). Sizes are uniforms, so
 * every shape shares the variant's one pipeline: on software WebGPU a pipeline takes a second or
 * more to compile, and a model has dozens of matmul shapes.
 */
type Variant = Pick<KernelParams, 'transB' | 'bias' | 'activation' | 'residual' | 'tile' | 'bF16' | 'aHalf' | 'bHalf'>;

/** The variant's WGSL, built once (sizes and alpha are uniforms, so they are not part of it). */
const variantWGSL = memoWGSL((v: Variant): string => matmulWGSL(v));
const variantOf = (p: KernelParams): Variant =>
  ({ transB: p.transB, bias: p.bias, activation: p.activation, residual: p.residual, tile: p.tile, bF16: p.bF16, aHalf: p.aHalf, bHalf: p.bHalf });

function matmulWGSL(p: Variant): string {
  const { wx, tm, tn } = p.tile;
  const BN = wx * tn;

  const setup: string[] = [];
  // row starts of A (clamped to the last row) and of B's columns n (clamped to the last column)
  for (let i = 0; i < tm; i++) setup.push(`let ar${i} = aBase + min(m0 + ${i}u, Z.M - 1u) * Z.K;`);
  for (let j = 0; j < tn; j++) {
    const n = `min(n0 + tx + ${j * wx}u, Z.N - 1u)`;
    setup.push(p.transB ? `let br${j} = bBase + ${n} * Z.K;` : `let br${j} = bBase + ${n};`);
  }
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) setup.push(`var acc${i}_${j} = 0.0;`);

  const inner: string[] = [];
  for (let i = 0; i < tm; i++) inner.push(`let a${i} = ${p.aHalf ? `round16(A[ar${i} + k])` : `A[ar${i} + k]`};`);
  const bRead = (i: string) => (p.bF16 ? `f32(B[${i}])` : p.bHalf ? `round16(B[${i}])` : `B[${i}]`);
  for (let j = 0; j < tn; j++) inner.push(`let b${j} = ${bRead(p.transB ? `br${j} + k` : `br${j} + k * Z.N`)};`);
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) inner.push(`acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});`);

  // epilogue: out = act(alpha * acc + bias) + residual. Written as a loop over a private copy of
  // the accumulators: unrolled 64 times (with erf) it took lavapipe seconds to compile.
  const save: string[] = [];
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) save.push(`accs[${i * tn + j}] = acc${i}_${j};`);

  let binding = 0;
  const bindings = [
    `@group(0) @binding(${binding++}) var<storage, read> A: array<f32>;`,
    `@group(0) @binding(${binding++}) var<storage, read> B: array<${p.bF16 ? 'f16' : 'f32'}>;`,
    p.bias ? `@group(0) @binding(${binding++}) var<storage, read> bias: array<f32>;` : '',
    p.residual ? `@group(0) @binding(${binding++}) var<storage, read> residual: array<f32>;` : '',
    `@group(0) @binding(${binding++}) var<storage, read_write> out: array<f32>;`,
    `@group(0) @binding(${binding++}) var<uniform> Z: Sizes;`,
  ].filter((s) => s);

  return /* wgsl */ `${p.bF16 ? 'enable f16;\n' : ''}
// ---- kernel: matmul ${p.transB ? 'A·Bᵀ' : 'A·B'} bias=${p.bias} act=${p.activation} residual=${p.residual} tile=${tm}x${wx}*${tn}${p.bF16 ? ' B=f16' : ''}${p.aHalf ? ' A rounded to f16' : ''}${p.bHalf && !p.bF16 ? ' B rounded to f16' : ''} ----
struct Sizes {
  M: u32, N: u32, K: u32,
  tilesM: u32, tilesN: u32, total: u32,   // output tiles along M and N, and in all (times the batch)
  bStride: u32,                           // elements between B matrices (0: one B for the batch)
  alpha: f32,
}
${bindings.join('\n')}
${p.activation === 'gelu' ? ERF_WGSL : ''}${p.aHalf || p.bHalf ? ROUND16_WGSL : ''}
@compute @workgroup_size(${wx})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) tx: u32) {
  let g = wid.y * nwg.x + wid.x; // flat tile index: n-tile fastest, then m-tile, then batch
  if (g >= Z.total) { return; }
  let n0 = (g % Z.tilesN) * ${BN}u;
  let mb = g / Z.tilesN;
  let m0 = (mb % Z.tilesM) * ${tm}u;
  let b = mb / Z.tilesM;
  let aBase = b * Z.M * Z.K;
  let bBase = b * Z.bStride;
  let oBase = b * Z.M * Z.N;
  ${setup.join('\n  ')}
  for (var k = 0u; k < Z.K; k++) {
    ${inner.join('\n    ')}
  }
  var accs: array<f32, ${tm * tn}>;
  ${save.join(' ')}
  for (var i = 0u; i < ${tm}u; i++) {
    let m = m0 + i;
    if (m >= Z.M) { break; }
    for (var j = 0u; j < ${tn}u; j++) {
      let n = n0 + tx + j * ${wx}u;
      if (n < Z.N) {
        let o = oBase + m * Z.N + n;
        var v = accs[i * ${tn}u + j] * Z.alpha;${p.bias ? '\n        v += bias[n];' : ''}
        v = ${ACT_WGSL[p.activation]};${p.residual ? '\n        v += residual[o];' : ''}
        out[o] = v;
      }
    }
  }
}
`;
}

function dispatchDirect(ctx: GpuContext, p: KernelParams, a: Tensor, b: Tensor, bias: Tensor | undefined,
                  residual: Tensor | undefined, out: Tensor): void {
  const z = sizesOf(p);
  const bindings: (Tensor | GPUBuffer)[] = [a, b];
  if (bias) bindings.push(bias);
  if (residual) bindings.push(residual);
  bindings.push(out, ctx.uniform(sizesData(z)));
  ctx.run({
    pipeline: ctx.pipeline(p.transB ? 'matmul_nt' : 'matmul_nn', variantWGSL(variantOf(p))),
    bindings,
    workgroups: grid1d(z.total).workgroups,
  });
}

// ------------------------------------------------------------------------------------------------
// the GPU-shaped candidates: gemm_tiled.ts with this file's operands and epilogue
// ------------------------------------------------------------------------------------------------

interface TiledVariant extends Omit<Variant, 'tile'> {
  tile: GemmTileName;
  /** A's rows are a multiple of 4 floats long (K % 4 == 0): vec4 loads */
  aVec4: boolean;
  /** B's contiguous axis (K stored [N, K], else N) is a multiple of 4 long: vec4 loads */
  bVec4: boolean;
}

const tiledWGSL = memoWGSL((v: TiledVariant): string => {
  const bElem = v.bF16 ? 'f16' : 'f32';
  let binding = 0;
  const decls = [
    `@group(0) @binding(${binding++}) var<storage, read> A: array<${v.aVec4 ? 'vec4f' : 'f32'}>;`,
    `@group(0) @binding(${binding++}) var<storage, read> B: array<${v.bVec4 ? `vec4<${bElem}>` : bElem}>;`,
    v.bias ? `@group(0) @binding(${binding++}) var<storage, read> bias: array<f32>;` : '',
    v.residual ? `@group(0) @binding(${binding++}) var<storage, read> residual: array<f32>;` : '',
    `@group(0) @binding(${binding++}) var<storage, read_write> out: array<f32>;`,
    `@group(0) @binding(${binding++}) var<uniform> Z: Sizes;`,
  ].filter((x) => x);
  const lanes = 'vec4u(0u, 1u, 2u, 3u)';
  return gemmTiledWGSL(GEMM_TILES[v.tile], {
    title: `matmul ${v.transB ? 'A·Bᵀ' : 'A·B'} bias=${v.bias} act=${v.activation} residual=${v.residual}${v.bF16 ? ' B=f16' : ''}`,
    decls: `struct Sizes {
  M: u32, N: u32, K: u32,
  tilesM: u32, tilesN: u32, total: u32,   // output tiles along M and N, and in all (times the batch)
  bStride: u32,                           // elements between B matrices (0: one B for the batch)
  alpha: f32,
}
${decls.join('\n')}
${v.activation === 'gelu' ? ERF_WGSL : ''}
${load4WGSL('ldA', 'A', v.aVec4)}
${load4WGSL('ldB', 'B', v.bVec4)}
fn loadA(b: u32, m: u32, k: u32) -> vec4f {
  return ldA((b * Z.M + min(m, Z.M - 1u)) * Z.K + k, vec4u(k) + ${lanes} < vec4u(Z.K));
}
fn loadB(b: u32, n: u32, k: u32) -> vec4f {${v.transB ? `
  return ldB(b * Z.bStride + min(n, Z.N - 1u) * Z.K + k, vec4u(k) + ${lanes} < vec4u(Z.K));` : `
  return ldB(b * Z.bStride + min(k, Z.K - 1u) * Z.N + n, (vec4u(n) + ${lanes} < vec4u(Z.N)) & vec4<bool>(k < Z.K));`}
}
fn store(b: u32, m: u32, n: u32, acc: f32) {
  let o = (b * Z.M + m) * Z.N + n;
  var v = acc * Z.alpha;${v.bias ? '\n  v += bias[n];' : ''}
  v = ${ACT_WGSL[v.activation]};${v.residual ? '\n  v += residual[o];' : ''}
  out[o] = v;
}`,
    bAlongK: v.transB,
    M: 'Z.M', N: 'Z.N', K: 'Z.K', tilesM: 'Z.tilesM', tilesN: 'Z.tilesN', total: 'Z.total',
    aHalf: v.aHalf, bHalf: v.bHalf || v.bF16, f16: v.bF16,
  });
});

function dispatchTiled(ctx: GpuContext, p: KernelParams, tile: GemmTileName, a: Tensor, b: Tensor, bias: Tensor | undefined,
                       residual: Tensor | undefined, out: Tensor): void {
  const t = GEMM_TILES[tile];
  const tilesM = Math.ceil(p.M / t.bm), tilesN = Math.ceil(p.N / t.bn);
  const z: Sizes = { M: p.M, N: p.N, K: p.K, tilesM, tilesN, total: tilesM * tilesN * p.batch, bStride: p.bStride, alpha: p.alpha };
  const v: TiledVariant = {
    transB: p.transB, bias: p.bias, activation: p.activation, residual: p.residual, tile, bF16: p.bF16,
    aHalf: p.aHalf, bHalf: p.bHalf, aVec4: p.K % 4 === 0, bVec4: (p.transB ? p.K : p.N) % 4 === 0,
  };
  const bindings: (Tensor | GPUBuffer)[] = [a, b];
  if (bias) bindings.push(bias);
  if (residual) bindings.push(residual);
  bindings.push(out, ctx.uniform(sizesData(z)));
  ctx.run({
    pipeline: ctx.pipeline(p.transB ? 'matmul_tiled_nt' : 'matmul_tiled_nn', tiledWGSL(v)),
    bindings,
    workgroups: grid1d(z.total).workgroups,
  });
}

// ------------------------------------------------------------------------------------------------
// the family: candidates, shape classes, defaults
// ------------------------------------------------------------------------------------------------

/** One matmul call as the kernel choice sees it. */
export interface MatmulCall {
  batch: number;
  M: number;
  N: number;
  K: number;
  /** B stored [N, K] */
  transB: boolean;
  /** one B per batch entry (else one B shared by the batch) */
  bBatched: boolean;
  bF16: boolean;
  aHalf: boolean;
  bHalf: boolean;
  bias: boolean;
  activation: Activation;
  residual: boolean;
}

const callOf = (p: KernelParams): MatmulCall => ({
  batch: p.batch, M: p.M, N: p.N, K: p.K, transB: p.transB, bBatched: p.bStride !== 0, bF16: p.bF16,
  aHalf: p.aHalf, bHalf: p.bHalf, bias: p.bias, activation: p.activation, residual: p.residual,
});

/** Whether a tile shape fits the device's workgroup limits. */
function tileFits(ctx: GpuContext, tile: GemmTileName, c: Pick<MatmulCall, 'aHalf' | 'bHalf' | 'bF16'>): boolean {
  const t = GEMM_TILES[tile], l = ctx.device.limits;
  const half = c.aHalf || c.bHalf || c.bF16;
  return (!half || ctx.hasF16) && tileInvocations(t) <= l.maxComputeInvocationsPerWorkgroup &&
    tileWorkgroupBytes(t, c.aHalf, c.bHalf || c.bF16) <= l.maxComputeWorkgroupStorageSize;
}

/**
 * Default choice among the tile shapes on a GPU: the 64x64 tile when the product has enough of
 * them to occupy a GPU's compute units (32 and more), else the 32x32 one (small products: the
 * mask decoder's tokens, the object-pointer projections).
 */
export function defaultGemmTile(M: number, N: number, batch: number): GemmTileName {
  return tileCount(GEMM_TILES.tiled64, M, N, batch) >= 32 ? 'tiled64' : 'tiled32';
}

export const MATMUL: KernelFamily<MatmulCall> = {
  op: 'matmul',
  candidates: ['direct', ...GEMM_TILE_NAMES],
  eligible: (ctx, c) => ['direct', ...GEMM_TILE_NAMES.filter((t) => tileFits(ctx, t, c))],
  // B's layout and the f16 inputs change the kernel; sizes in powers of 4
  classOf: (c) => `${c.transB ? 'nt' : 'nn'}${c.aHalf || c.bHalf || c.bF16 ? '.h' : ''} b${bucket4(c.batch)} m${bucket4(c.M)} n${bucket4(c.N)} k${bucket4(c.K)}`,
  fallback: (ctx, c) => {
    if (softwareDefaults(ctx)) return 'direct';
    const t = defaultGemmTile(c.M, c.N, c.batch);
    return tileFits(ctx, t, c) ? t : 'direct';
  },
  flops: (c) => 2 * c.batch * c.M * c.N * c.K,
  instance: (ctx, c) => {
    const a = ctx.upload(randomValues(c.batch * c.M * c.K, 1), [c.batch, c.M, c.K]);
    const bShape = c.transB ? [c.N, c.K] : [c.K, c.N];
    const bVals = randomValues((c.bBatched ? c.batch : 1) * c.N * c.K, 2, 1 / Math.sqrt(c.K));
    const b = c.bF16 ? ctx.upload(f32ToF16Array(bVals), c.bBatched ? [c.batch, ...bShape] : bShape, 'f16')
      : ctx.upload(bVals, c.bBatched ? [c.batch, ...bShape] : bShape);
    const bias = c.bias ? ctx.upload(randomValues(c.N, 3), [c.N]) : undefined;
    const residual = c.residual ? ctx.upload(randomValues(c.batch * c.M * c.N, 4), [c.batch, c.M, c.N]) : undefined;
    const out = ctx.empty([c.batch, c.M, c.N]);
    const p: KernelParams = {
      batch: c.batch, M: c.M, N: c.N, K: c.K, transB: c.transB, bStride: c.bBatched ? c.N * c.K : 0, alpha: 1,
      bias: c.bias, activation: c.activation, residual: c.residual, tile: DEFAULT_TILE, bF16: c.bF16, aHalf: c.aHalf, bHalf: c.bHalf,
    };
    return {
      run: (cand) => dispatch(ctx, p, cand, a, b, bias, residual, out),
      release: () => { for (const t of [a, b, bias, residual, out]) t?.release(); },
    };
  },
};

function dispatch(ctx: GpuContext, p: KernelParams, candidate: string, a: Tensor, b: Tensor, bias: Tensor | undefined,
                  residual: Tensor | undefined, out: Tensor): void {
  if (candidate === 'direct') dispatchDirect(ctx, p, a, b, bias, residual, out);
  else dispatchTiled(ctx, p, candidate as GemmTileName, a, b, bias, residual, out);
}

/** Runs the call with the candidate the context's kernel table gives (or `forced`, or the direct kernel with a `tile`). */
function run(ctx: GpuContext, p: KernelParams, forced: string | undefined, tile: MatmulTile | undefined, a: Tensor, b: Tensor,
             bias: Tensor | undefined, residual: Tensor | undefined, out: Tensor): void {
  const candidate = tile ? 'direct' : choose(ctx, MATMUL, callOf(p), forced);
  dispatch(ctx, p, candidate, a, b, bias, residual, out);
}

const shapeStr = (t: Tensor): string => `[${t.shape.join(', ')}]`;

/** A weight may be f16 (read as f16, computed in f32) when the device has shader-f16. */
export function checkWeightDtype(kernel: string, ctx: GpuContext, w: Tensor): void {
  if (w.dtype === 'f16' && !ctx.hasF16) {
    throw new Error(`${kernel}: an f16 weight needs a device with the 'shader-f16' feature (this one has none); load the weights as f32`);
  }
}

function checkOut(name: string, out: Tensor | undefined, shape: readonly number[]): void {
  if (!out) return;
  if (out.shape.length !== shape.length || out.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${name}: out has shape ${shapeStr(out)}, expected [${shape.join(', ')}]`);
  }
}

export interface LinearOptions {
  /** [N] */
  bias?: Tensor;
  /** applied after the bias; 'gelu' is the exact (erf) GELU of torch.nn.GELU() */
  activation?: Activation;
  /** added after the activation (x + mlp(x)); same shape as the output */
  residual?: Tensor;
  out?: Tensor;
  /** tiling override of the 'direct' kernel (benchmarks) */
  tile?: MatmulTile;
  /** run this candidate of the matmul family (tests, benchmarks); default: the context's choice */
  kernel?: string;
}

/**
 * torch.nn.Linear with a fused epilogue: out = act(x · weightᵀ + bias) + residual.
 *
 * x [..., K], weight [N, K] (PyTorch layout), bias [N], residual [..., N] -> out [..., N]
 */
export function linear(ctx: GpuContext, x: Tensor, weight: Tensor, opts: LinearOptions = {}): Tensor {
  const K = x.shape[x.shape.length - 1];
  if (K === undefined) throw new Error(`linear: input ${shapeStr(x)} has no feature axis`);
  if (weight.shape.length !== 2) throw new Error(`linear: weight ${shapeStr(weight)} is not [out, in]`);
  const [N, Kw] = weight.shape as [number, number];
  if (Kw !== K) throw new Error(`linear: input ${shapeStr(x)} has K=${K} features but weight ${shapeStr(weight)} expects ${Kw}`);
  const lead = x.shape.slice(0, -1);
  const outShape = [...lead, N];
  const M = x.size / K;
  if (opts.bias && (opts.bias.shape.length !== 1 || opts.bias.shape[0] !== N)) {
    throw new Error(`linear: bias ${shapeStr(opts.bias)} does not match weight ${shapeStr(weight)} (expected [${N}])`);
  }
  if (opts.residual && (opts.residual.shape.length !== outShape.length || opts.residual.shape.some((d, i) => d !== outShape[i]))) {
    throw new Error(`linear: residual ${shapeStr(opts.residual)} does not match output [${outShape.join(', ')}]`);
  }
  checkOut('linear', opts.out, outShape);
  if (x.dtype !== 'f32') throw new Error('linear: the input must be f32');
  checkWeightDtype('linear', ctx, weight);
  const out = opts.out ?? ctx.empty(outShape);
  if (M === 0 || N === 0) return out;
  // precision 'f16': an f16 weight takes an f16-rounded activation (f32 accumulation)
  const half = weight.dtype === 'f16' && ctx.kernels.f16.matmul;
  run(ctx, {
    batch: 1, M, N, K, transB: true, bStride: 0, alpha: 1,
    bias: !!opts.bias, activation: opts.activation ?? 'none', residual: !!opts.residual,
    tile: opts.tile ?? DEFAULT_TILE, bF16: weight.dtype === 'f16', aHalf: half, bHalf: half,
  }, opts.kernel, opts.tile, x, weight, opts.bias, opts.residual, out);
  return out;
}

export interface MatmulOptions {
  /** b is [B, N, K] (or [N, K]) and is used transposed: out = a · bᵀ (e.g. q · kᵀ) */
  transposeB?: boolean;
  /** scale applied to the product (e.g. 1/sqrt(head_dim)) */
  alpha?: number;
  out?: Tensor;
  tile?: MatmulTile;
  /** run this candidate of the matmul family (tests, benchmarks); default: the context's choice */
  kernel?: string;
  /** round a (halfA) / b (halfB) to f16 as they are read, products summed in f32 (attention at precision 'f16') */
  halfA?: boolean;
  halfB?: boolean;
}

/**
 * Batched matrix multiply: out[b] = alpha * a[b] · op(b[b]).
 *
 * a [B, M, K] or [M, K]; b [B, K, N] (or [B, N, K] with transposeB); a 2-D b is shared by the
 * whole batch -> out [B, M, N] (or [M, N] when both are 2-D).
 */
export function matmul(ctx: GpuContext, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transB = opts.transposeB ?? false;
  if (a.shape.length !== 2 && a.shape.length !== 3) throw new Error(`matmul: a ${shapeStr(a)} must be [B, M, K] or [M, K]`);
  if (b.shape.length !== 2 && b.shape.length !== 3) throw new Error(`matmul: b ${shapeStr(b)} must be 2-D or 3-D`);
  const [batchA, M, K] = (a.shape.length === 3 ? a.shape : [1, ...a.shape]) as [number, number, number];
  const [batchB, b1, b2] = (b.shape.length === 3 ? b.shape : [1, ...b.shape]) as [number, number, number];
  const [Kb, N] = transB ? [b2, b1] : [b1, b2];
  if (Kb !== K) {
    throw new Error(`matmul: a ${shapeStr(a)} has K=${K} but b ${shapeStr(b)}${transB ? ' (transposed)' : ''} has K=${Kb}`);
  }
  if (b.shape.length === 3 && batchB !== batchA) {
    throw new Error(`matmul: batch of a ${shapeStr(a)} and b ${shapeStr(b)} differ`);
  }
  const outShape = a.shape.length === 2 && b.shape.length === 2 ? [M, N] : [batchA, M, N];
  checkOut('matmul', opts.out, outShape);
  if (a.dtype !== 'f32') throw new Error('matmul: a must be f32');
  checkWeightDtype('matmul', ctx, b);
  if ((opts.halfA || opts.halfB) && !ctx.hasF16) throw new Error("matmul: halfA / halfB need a device with the 'shader-f16' feature");
  const out = opts.out ?? ctx.empty(outShape);
  if (M === 0 || N === 0 || batchA === 0) return out;
  run(ctx, {
    batch: batchA, M, N, K, transB, bStride: b.shape.length === 3 ? K * N : 0, alpha: opts.alpha ?? 1,
    bias: false, activation: 'none', residual: false, tile: opts.tile ?? DEFAULT_TILE, bF16: b.dtype === 'f16',
    aHalf: opts.halfA ?? false, bHalf: opts.halfB ?? false,
  }, opts.kernel, opts.tile, a, b, undefined, undefined, out);
  return out;
}
