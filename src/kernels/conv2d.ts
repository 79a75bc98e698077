import type { GpuContext } from '../gpu/context.js';
import { f32ToF16Array } from '../gpu/half.js';
import type { Tensor } from '../gpu/tensor.js';
import { bucket4, choose, randomValues, softwareDefaults, type KernelFamily } from './choice.js';
import { GEMM_TILE_NAMES, GEMM_TILES, gemmTiledWGSL, tileInvocations, tileWorkgroupBytes, type GemmTileName } from './gemm_tiled.js';
import { grid1d, memoWGSL } from './util.js';
import { checkWeightDtype, defaultGemmTile, ROUND16_WGSL } from './matmul.js';

/**
 * 2-D convolution as torch.nn.Conv2d (zero padding, square stride/padding), on channels-last
 * activations with the weight in PyTorch's layout:
 *
 *   x [B, H, W, Cin], weight [Cout, Cin/groups, kh, kw], bias [Cout]  ->  out [B, Ho, Wo, Cout]
 *   Ho = floor((H + 2*padding - kh) / stride) + 1 (likewise Wo)
 *
 * The weight may be f16 (a half-precision copy of the checkpoint, on devices with shader-f16): it
 * is widened to f32 as it is read, and all arithmetic stays f32.
 *
 * Three kernels:
 * - `conv2d_gemm` (groups = 1, Cout >= 16): an implicit GEMM, M = B*Ho*Wo output pixels, N = Cout,
 *   K = Cin*kh*kw, run by a candidate of the `conv2d` family (CONV2D below, chosen per adapter
 *   and shape class like the matmul's; see choice.ts): 'direct', this file's kernel shaped for
 *   lavapipe, or 'tiled32' / 'tiled64' / 'tiled128x64', the GPU-shaped workgroup-memory GEMM of
 *   gemm_tiled.ts reading its A blocks straight out of the input (no im2col buffer).
 *   The 'direct' kernel: each invocation holds a TM x TN register tile (TM pixels x TN channels).
 *   K is walked as (ky, kx, ci) so the activation reads run along the contiguous channel axis and
 *   no division is needed inside the loop; the weight is read in place at [co, ci, ky, kx].
 *   The pixels of a tile are the same for all invocations of a workgroup row, so their loads are
 *   uniform across the SIMD lanes of a CPU implementation; channels vary across lanes.
 * - `conv2d_depthwise` (groups = Cin = Cout, e.g. ConvNeXt's 7x7): one invocation per channel and
 *   4 neighbouring output pixels along x, which share the input columns they read.
 * - `conv2d_direct` (anything else: grouped, few output channels such as the mask downsampler's
 *   first layers): one invocation per output value, looping over its group's input channels and
 *   the kernel window.
 */
export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  groups?: number;
  /** tiling of the dense kernel's 'direct' candidate (benchmarks) */
  regTile?: ConvRegTile;
  /** run this candidate of the conv2d family for a dense conv (tests, benchmarks); default: the context's choice */
  kernel?: string;
}

interface ConvGeom {
  B: number; H: number; W: number; Cin: number;
  Cout: number; kh: number; kw: number;
  stride: number; pad: number; groups: number;
  Ho: number; Wo: number;
  /** weight stored as f16 */
  wF16: boolean;
  /** the input rounded to f16 as it is read (precision 'f16' with an f16 weight) */
  xHalf?: boolean;
}

/** `enable f16;` when the weight is f16. */
const wEnable = (g: ConvGeom): string => (g.wF16 ? 'enable f16;\n' : '');
/** A read of the weight at index `i`, as f32. */
const wRead = (g: ConvGeom, i: string): string => (g.wF16 ? `f32(w[${i}])` : `w[${i}]`);
/** A read of the input at index `i` (rounded to f16 when xHalf). */
const xRead = (g: ConvGeom, i: string): string => (g.xHalf ? `round16(x[${i}])` : `x[${i}]`);
const wDecl = (g: ConvGeom): string => `@group(0) @binding(1) var<storage, read> w: array<${g.wF16 ? 'f16' : 'f32'}>;`;

// ---------------------------------------------------------------- implicit GEMM (dense convs)

/** Register tile and workgroup shape of the implicit GEMM. */
export interface ConvRegTile {
  /** output pixels per invocation (the same for all invocations of a workgroup row) */
  tm: number;
  /** output channels per invocation (strided by wx) */
  tn: number;
  /** invocations along N (the SIMD lanes on lavapipe) */
  wx: number;
  /** invocations along M */
  wy: number;
}
export const CONV_REG_TILE: ConvRegTile = { tm: 8, tn: 4, wx: 8, wy: 4 };

const gemmWGSL = memoWGSL((g: ConvGeom, hasBias: boolean, t: ConvRegTile): string => {
  const { B, H, W, Cin, Cout, kh, kw, stride, pad, Ho, Wo } = g;
  const { tm: TM, tn: TN, wx: WGX, wy: WGY } = t;
  const M = B * Ho * Wo;
  const K = Cin * kh * kw;
  const BM = TM * WGY, BN = TN * WGX;
  const tilesN = Math.ceil(Cout / BN);
  const i_ = [...Array(TM).keys()], j_ = [...Array(TN).keys()];
  // Without padding every tap is inside the input, and for one kernel row the taps (kx, ci) of a
  // pixel are kw*Cin consecutive floats of x: one flat loop (the patch embedding's 16x3 = 48).
  const unpaddedLoop = `for (var ky = 0u; ky < ${kh}u; ky++) {
    ${i_.map((i) => `let a0${i} = xb${i} + (u32(iy${i}) + ky) * ${W * Cin}u + u32(ix${i}) * ${Cin}u;`).join('\n    ')}
    for (var r = 0u; r < ${kw * Cin}u; r++) {
      let kk = (r % ${Cin}u) * ${kh * kw}u + ky * ${kw}u + r / ${Cin}u; // weight [co, ci, ky, kx]
      ${j_.map((j) => `let b${j} = ${wRead(g, `wb${j} + kk`)};`).join(' ')}
      ${i_.map((i) => `let a${i} = ${xRead(g, `a0${i} + r`)};\n      ${j_.map((j) => `acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});`).join(' ')}`).join('\n      ')}
    }
  }`;
  const paddedLoop = `for (var ky = 0; ky < ${kh}; ky++) {
    for (var kx = 0; kx < ${kw}; kx++) {
      // Zero padding: rows whose input pixel is outside read x[0] and scale it by 0.
      // The test is two unsigned compares (a negative coordinate wraps to a huge one) joined by a
      // non-short-circuit '&': '&&' becomes a branch per operand, and those 3 x TM branches per
      // tap took SwiftShader's compiler 15-30 s per pipeline (against ~0.2 s this way).
      ${i_.map((i) => `let y${i} = iy${i} + ky; let x${i} = ix${i} + kx;
      let ok${i} = (u32(y${i}) < ${H}u) & (u32(x${i}) < ${W}u);
      let a0${i} = select(0u, xb${i} + (u32(y${i}) * ${W}u + u32(x${i})) * ${Cin}u, ok${i});
      let s${i} = select(0.0, 1.0, ok${i});`).join('\n      ')}
      let k0 = u32(ky * ${kw} + kx);
      for (var ci = 0u; ci < ${Cin}u; ci++) {
        let kk = ci * ${kh * kw}u + k0; // weight [co, ci, ky, kx]
        ${j_.map((j) => `let b${j} = ${wRead(g, `wb${j} + kk`)};`).join(' ')}
        ${i_.map((i) => `let a${i} = ${xRead(g, `a0${i} + ci`)} * s${i};\n        ${j_.map((j) => `acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});`).join(' ')}`).join('\n        ')}
      }
    }
  }`;
  return /* wgsl */ `${wEnable(g)}
${g.xHalf ? ROUND16_WGSL : ''}
// ---- kernel: conv2d_gemm${g.xHalf ? ' (input rounded to f16)' : ''} ----
// x [${B}, ${H}, ${W}, ${Cin}], w [${Cout}, ${Cin}, ${kh}, ${kw}] -> out [${B}, ${Ho}, ${Wo}, ${Cout}]
// stride ${stride}, padding ${pad}; M = ${M}, N = ${Cout}, K = ${K}; tile ${BM} x ${BN} (${TM} x ${TN} per invocation)
@group(0) @binding(0) var<storage, read> x: array<f32>;
${wDecl(g)}
${hasBias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${hasBias ? 3 : 2}) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WGX}, ${WGY})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) lid: vec3u) {
  let tile = wid.y * nwg.x + wid.x;
  let tn = tile % ${tilesN}u;
  let tm = tile / ${tilesN}u;
  if (tm * ${BM}u >= ${M}u) { return; }
  let mb = tm * ${BM}u + lid.y * ${TM}u;
  let n0 = tn * ${BN}u + lid.x;

  // Output pixel of each row of the register tile: batch offset, top-left input corner.
  ${i_.map((i) => `let m${i} = min(mb + ${i}u, ${M - 1}u);
  let xb${i} = (m${i} / ${Wo * Ho}u) * ${H * W * Cin}u;
  let iy${i} = i32((m${i} / ${Wo}u) % ${Ho}u) * ${stride} - ${pad};
  let ix${i} = i32(m${i} % ${Wo}u) * ${stride} - ${pad};`).join('\n  ')}
  // Weight row of each column (clamped; out-of-range columns are computed but not stored).
  ${j_.map((j) => `let wb${j} = min(n0 + ${j * WGX}u, ${Cout - 1}u) * ${K}u;`).join('\n  ')}

  ${i_.map((i) => j_.map((j) => `var acc${i}_${j} = 0.0;`).join(' ')).join('\n  ')}
  ${pad === 0 ? unpaddedLoop : paddedLoop}
  ${i_.map((i) => `if (mb + ${i}u < ${M}u) {
    ${j_.map((j) => `if (n0 + ${j * WGX}u < ${Cout}u) { out[(mb + ${i}u) * ${Cout}u + n0 + ${j * WGX}u] = acc${i}_${j}${hasBias ? ` + bias[n0 + ${j * WGX}u]` : ''}; }`).join('\n    ')}
  }`).join('\n  ')}
}
`;
});

// ---------------------------------------------------------------- implicit GEMM, GPU-shaped (gemm_tiled.ts)

/**
 * The operands of the implicit GEMM for gemm_tiled.ts: A[m][k] is input pixel (iy, ix) of output
 * pixel m at tap (ky, kx), channel ci, with k walked as (ky, kx, ci) so that 4 consecutive k are
 * 4 consecutive channels of one pixel (one vec4 load when Cin is a multiple of 4); zero padding
 * and k >= K give zeros. B[k][n] is the weight [n, ci, ky, kx], read in place.
 */
const tiledGemmWGSL = memoWGSL((g: ConvGeom, hasBias: boolean, tile: GemmTileName): string => {
  const { B, H, W, Cin, Cout, kh, kw, stride, pad, Ho, Wo } = g;
  const M = B * Ho * Wo, K = Cin * kh * kw;
  const t = GEMM_TILES[tile];
  const vec = Cin % 4 === 0;
  // the pixel and the in-bounds test of tap (ky, kx) for output pixel mm, channel ci
  const tap = (k: string): string => `
  let tap = ${k} / ${Cin}u;
  let ci = ${k} % ${Cin}u;
  let iy = oy + tap / ${kw}u;   // + pad
  let ix = ox + tap % ${kw}u;
  let ok = (${k} < ${K}u) & (iy - ${pad}u < ${H}u) & (ix - ${pad}u < ${W}u);
  let at = select(0u, ((bi * ${H}u + iy - ${pad}u) * ${W}u + ix - ${pad}u) * ${Cin}u + ci, ok);`;
  return gemmTiledWGSL(t, {
    title: `conv2d_gemm x [${B}, ${H}, ${W}, ${Cin}], w [${Cout}, ${Cin}, ${kh}, ${kw}] stride ${stride} pad ${pad}${g.wF16 ? ' w=f16' : ''}`,
    decls: `@group(0) @binding(0) var<storage, read> x: array<${vec ? 'vec4f' : 'f32'}>;
${wDecl(g)}
${hasBias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${hasBias ? 3 : 2}) var<storage, read_write> out: array<f32>;

// output pixel mm (clamped to the last): batch, and its input corner + pad (unsigned: the
// bounds test of a coordinate c is c - pad < size, which wraps for c < pad)
struct Pixel { bi: u32, oy: u32, ox: u32 }
fn pixel(m: u32) -> Pixel {
  let mm = min(m, ${M - 1}u);
  return Pixel(mm / ${Ho * Wo}u, ((mm / ${Wo}u) % ${Ho}u) * ${stride}u, (mm % ${Wo}u) * ${stride}u);
}
${vec ? `fn loadA(b: u32, m: u32, k: u32) -> vec4f {
  let p = pixel(m);
  let bi = p.bi; let oy = p.oy; let ox = p.ox;${tap('k')}
  return select(vec4f(0.0), x[at / 4u], ok);
}` : `fn tapA(bi: u32, oy: u32, ox: u32, k: u32) -> f32 {${tap('k')}
  return select(0.0, x[at], ok);
}
fn loadA(b: u32, m: u32, k: u32) -> vec4f {
  let p = pixel(m);
  return vec4f(tapA(p.bi, p.oy, p.ox, k), tapA(p.bi, p.oy, p.ox, k + 1u), tapA(p.bi, p.oy, p.ox, k + 2u), tapA(p.bi, p.oy, p.ox, k + 3u));
}`}
fn tapB(n: u32, k: u32) -> f32 {
  let tap = k / ${Cin}u;
  let at = min(n, ${Cout - 1}u) * ${K}u + (k % ${Cin}u) * ${kh * kw}u + tap;   // weight [n, ci, ky, kx]
  return select(0.0, ${wRead(g, `min(at, ${Cout * K - 1}u)`)}, k < ${K}u);
}
fn loadB(b: u32, n: u32, k: u32) -> vec4f {
  return vec4f(tapB(n, k), tapB(n, k + 1u), tapB(n, k + 2u), tapB(n, k + 3u));
}
fn store(b: u32, m: u32, n: u32, v: f32) {
  out[m * ${Cout}u + n] = v${hasBias ? ' + bias[n]' : ''};
}`,
    bAlongK: true,
    M: `${M}u`, N: `${Cout}u`, K: `${K}u`,
    tilesM: `${Math.ceil(M / t.bm)}u`, tilesN: `${Math.ceil(Cout / t.bn)}u`, total: `${Math.ceil(M / t.bm) * Math.ceil(Cout / t.bn)}u`,
    aHalf: !!g.xHalf, bHalf: g.wF16, f16: g.wF16,
  });
});

// ---------------------------------------------------------------- the family of the dense conv

/** A dense convolution (groups 1, Cout >= 16) as the kernel choice sees it. */
export interface Conv2dCall {
  B: number; H: number; W: number; Cin: number; Cout: number; kh: number; kw: number;
  stride: number; pad: number; bias: boolean; wF16: boolean; xHalf: boolean;
}

const geomOf = (c: Conv2dCall): ConvGeom => ({
  ...c, groups: 1, Ho: Math.floor((c.H + 2 * c.pad - c.kh) / c.stride) + 1, Wo: Math.floor((c.W + 2 * c.pad - c.kw) / c.stride) + 1,
});

function convTileFits(ctx: GpuContext, tile: GemmTileName, c: Conv2dCall): boolean {
  const t = GEMM_TILES[tile], l = ctx.device.limits;
  return tileInvocations(t) <= l.maxComputeInvocationsPerWorkgroup &&
    tileWorkgroupBytes(t, c.xHalf, c.wF16) <= l.maxComputeWorkgroupStorageSize;
}

export const CONV2D: KernelFamily<Conv2dCall> = {
  op: 'conv2d',
  candidates: ['direct', ...GEMM_TILE_NAMES],
  eligible: (ctx, c) => ['direct', ...GEMM_TILE_NAMES.filter((t) => convTileFits(ctx, t, c))],
  classOf: (c) => {
    const g = geomOf(c);
    return `${c.kh}x${c.kw}${c.pad > 0 ? ' padded' : ''}${c.wF16 || c.xHalf ? ' h' : ''} m${bucket4(c.B * g.Ho * g.Wo)} n${bucket4(c.Cout)} k${bucket4(c.Cin * c.kh * c.kw)}`;
  },
  fallback: (ctx, c) => {
    if (softwareDefaults(ctx)) return 'direct';
    const g = geomOf(c);
    const t = defaultGemmTile(c.B * g.Ho * g.Wo, c.Cout, 1);
    return convTileFits(ctx, t, c) ? t : 'direct';
  },
  flops: (c) => {
    const g = geomOf(c);
    return 2 * c.B * g.Ho * g.Wo * c.Cout * c.Cin * c.kh * c.kw;
  },
  instance: (ctx, c) => {
    const x = ctx.upload(randomValues(c.B * c.H * c.W * c.Cin, 1), [c.B, c.H, c.W, c.Cin]);
    const wv = randomValues(c.Cout * c.Cin * c.kh * c.kw, 2, 0.1);
    const ws = [c.Cout, c.Cin, c.kh, c.kw];
    const w = c.wF16 ? ctx.upload(f32ToF16Array(wv), ws, 'f16') : ctx.upload(wv, ws);
    const bias = c.bias ? ctx.upload(randomValues(c.Cout, 3), [c.Cout]) : undefined;
    const g = { ...geomOf(c), xHalf: c.xHalf };
    const outs: Tensor[] = [];
    return {
      run: (cand) => { outs.push(runGemm(ctx, g, x, w, bias, cand, CONV_REG_TILE)); },
      release: () => { for (const t of [x, w, bias, ...outs.splice(0)]) t?.release(); },
    };
  },
};

/** The dense conv with one candidate of the family. */
function runGemm(ctx: GpuContext, g: ConvGeom, x: Tensor, weight: Tensor, bias: Tensor | undefined, candidate: string,
  regTile: ConvRegTile): Tensor {
  const out = ctx.empty([g.B, g.Ho, g.Wo, g.Cout]);
  const bindings = bias ? [x, weight, bias, out] : [x, weight, out];
  if (candidate === 'direct') {
    // [B*Ho*Wo, Cout] = im2col(x) [B*Ho*Wo, Cin*kh*kw] @ weight^T
    const t = regTile;
    const tiles = Math.ceil((g.B * g.Ho * g.Wo) / (t.tm * t.wy)) * Math.ceil(g.Cout / (t.tn * t.wx));
    ctx.run({ pipeline: ctx.pipeline('conv2d_gemm', gemmWGSL(g, !!bias, t)), bindings, workgroups: grid1d(tiles).workgroups });
  } else {
    const t = GEMM_TILES[candidate as GemmTileName];
    const tiles = Math.ceil((g.B * g.Ho * g.Wo) / t.bm) * Math.ceil(g.Cout / t.bn);
    ctx.run({
      pipeline: ctx.pipeline('conv2d_gemm_tiled', tiledGemmWGSL(g, !!bias, candidate as GemmTileName)),
      bindings, workgroups: grid1d(tiles).workgroups,
    });
  }
  return out;
}

// ---------------------------------------------------------------- depthwise (groups = Cin = Cout)

/** Workgroup size of the depthwise and direct kernels. */
const DWG = 64;
/** Output pixels along x per invocation of the depthwise kernel (they share input columns). */
const DW_TX = 4;

const depthwiseWGSL = memoWGSL((g: ConvGeom, hasBias: boolean): string => {
  const { B, H, W, Cin: C, kh, kw, stride, pad, Ho, Wo } = g;
  const WoT = Math.ceil(Wo / DW_TX);
  const total = B * Ho * WoT * C;
  const span = (DW_TX - 1) * stride + kw; // input columns one invocation reads per kernel row
  const t_ = [...Array(DW_TX).keys()];
  return /* wgsl */ `${wEnable(g)}
// ---- kernel: conv2d_depthwise ----
// x [${B}, ${H}, ${W}, ${C}], w [${C}, 1, ${kh}, ${kw}] -> out [${B}, ${Ho}, ${Wo}, ${C}]
// stride ${stride}, padding ${pad}; ${DW_TX} output pixels along x per invocation
@group(0) @binding(0) var<storage, read> x: array<f32>;
${wDecl(g)}
${hasBias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${hasBias ? 3 : 2}) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${DWG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let o = (wid.y * nwg.x + wid.x) * ${DWG}u + lid;
  if (o >= ${total}u) { return; }
  let c = o % ${C}u;
  let p = o / ${C}u;
  let ox0 = (p % ${WoT}u) * ${DW_TX}u;
  let oy = i32((p / ${WoT}u) % ${Ho}u);
  let b = p / ${WoT * Ho}u;
  let ix0 = i32(ox0) * ${stride} - ${pad};
  ${t_.map((t) => `var acc${t} = ${hasBias ? 'bias[c]' : '0.0'};`).join(' ')}
  for (var ky = 0; ky < ${kh}; ky++) {
    let iy = oy * ${stride} - ${pad} + ky;
    if (iy < 0 || iy >= ${H}) { continue; }
    let row = (b * ${H}u + u32(iy)) * ${W}u;
    var xs: array<f32, ${span}>;
    for (var j = 0; j < ${span}; j++) {
      let ix = ix0 + j;
      let ok = ix >= 0 && ix < ${W};
      xs[j] = select(0.0, x[(row + u32(select(0, ix, ok))) * ${C}u + c], ok);
    }
    let wr = c * ${kh * kw}u + u32(ky) * ${kw}u;
    for (var kx = 0; kx < ${kw}; kx++) {
      let wv = ${wRead(g, 'wr + u32(kx)')};
      ${t_.map((t) => `acc${t} = fma(xs[kx + ${t * stride}], wv, acc${t});`).join('\n      ')}
    }
  }
  let ob = ((b * ${Ho}u + u32(oy)) * ${Wo}u + ox0) * ${C}u + c;
  ${t_.map((t) => `if (ox0 + ${t}u < ${Wo}u) { out[ob + ${t * C}u] = acc${t}; }`).join('\n  ')}
}
`;
});

// ---------------------------------------------------------------- direct (grouped / small convs)


const directWGSL = memoWGSL((g: ConvGeom, hasBias: boolean): string => {
  const { B, H, W, Cin, Cout, kh, kw, stride, pad, groups, Ho, Wo } = g;
  const cinG = Cin / groups, coutG = Cout / groups;
  const total = B * Ho * Wo * Cout;
  return /* wgsl */ `${wEnable(g)}
// ---- kernel: conv2d_direct ----
// x [${B}, ${H}, ${W}, ${Cin}], w [${Cout}, ${cinG}, ${kh}, ${kw}] -> out [${B}, ${Ho}, ${Wo}, ${Cout}]
// stride ${stride}, padding ${pad}, groups ${groups}
@group(0) @binding(0) var<storage, read> x: array<f32>;
${wDecl(g)}
@group(0) @binding(${hasBias ? 3 : 2}) var<storage, read_write> out: array<f32>;
${hasBias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}

@compute @workgroup_size(${DWG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let o = (wid.y * nwg.x + wid.x) * ${DWG}u + lid;
  if (o >= ${total}u) { return; }
  let co = o % ${Cout}u;
  let p = o / ${Cout}u;
  let ox = i32(p % ${Wo}u);
  let oy = i32((p / ${Wo}u) % ${Ho}u);
  let b = p / ${Wo * Ho}u;
  let ci0 = (co / ${coutG}u) * ${cinG}u; // first input channel of this output's group
  let wrow = co * ${cinG * kh * kw}u;
  var acc = ${hasBias ? 'bias[co]' : '0.0'};
  for (var ky = 0; ky < ${kh}; ky++) {
    let iy = oy * ${stride} - ${pad} + ky;
    if (iy < 0 || iy >= ${H}) { continue; }
    for (var kx = 0; kx < ${kw}; kx++) {
      let ix = ox * ${stride} - ${pad} + kx;
      if (ix < 0 || ix >= ${W}) { continue; }
      let xa = ((b * ${H}u + u32(iy)) * ${W}u + u32(ix)) * ${Cin}u + ci0;
      let wa = wrow + u32(ky * ${kw} + kx);
      for (var c = 0u; c < ${cinG}u; c++) {
        acc += x[xa + c] * ${wRead(g, `wa + c * ${kh * kw}u`)};
      }
    }
  }
  out[o] = acc;
}
`;
});

// ---------------------------------------------------------------- wrapper

/** torch.nn.Conv2d on channels-last input: x [B, H, W, Cin] -> [B, Ho, Wo, Cout]. */
export function conv2d(ctx: GpuContext, x: Tensor, weight: Tensor, bias: Tensor | undefined, opts: Conv2dOptions = {}): Tensor {
  const stride = opts.stride ?? 1, pad = opts.padding ?? 0, groups = opts.groups ?? 1;
  if (x.shape.length !== 4) throw new Error(`conv2d: x must be [B, H, W, Cin], got [${x.shape}]`);
  if (weight.shape.length !== 4) throw new Error(`conv2d: weight must be [Cout, Cin/groups, kh, kw], got [${weight.shape}]`);
  const [B, H, W, Cin] = x.shape as [number, number, number, number];
  const [Cout, cinG, kh, kw] = weight.shape as [number, number, number, number];
  if (Cin % groups !== 0 || Cout % groups !== 0 || cinG !== Cin / groups) {
    throw new Error(`conv2d: x [${x.shape}] and weight [${weight.shape}] do not fit groups=${groups}`);
  }
  if (bias && (bias.size !== Cout)) throw new Error(`conv2d: bias [${bias.shape}] does not match Cout=${Cout}`);
  if (x.dtype !== 'f32' || (bias && bias.dtype !== 'f32')) throw new Error('conv2d: x and bias must be f32');
  checkWeightDtype('conv2d', ctx, weight);
  const Ho = Math.floor((H + 2 * pad - kh) / stride) + 1;
  const Wo = Math.floor((W + 2 * pad - kw) / stride) + 1;
  if (Ho <= 0 || Wo <= 0) throw new Error(`conv2d: empty output for input ${H}x${W}, kernel ${kh}x${kw}`);
  const g: ConvGeom = { B, H, W, Cin, Cout, kh, kw, stride, pad, groups, Ho, Wo, wF16: weight.dtype === 'f16' };
  if (groups === 1 && Cout >= 16 && !(Cin === Cout && groups === Cin)) {
    // precision 'f16': an f16 weight takes an f16-rounded input (f32 accumulation)
    const xHalf = g.wF16 && ctx.kernels.f16.matmul;
    const call: Conv2dCall = { B, H, W, Cin, Cout, kh, kw, stride, pad, bias: !!bias, wF16: g.wF16, xHalf };
    const candidate = opts.regTile ? 'direct' : choose(ctx, CONV2D, call, opts.kernel);
    return runGemm(ctx, { ...g, xHalf }, x, weight, bias, candidate, opts.regTile ?? CONV_REG_TILE);
  }
  const out = ctx.empty([B, Ho, Wo, Cout]);
  const bindings = bias ? [x, weight, bias, out] : [x, weight, out];

  if (groups === Cin && Cout === Cin) {
    const tiles = B * Ho * Math.ceil(Wo / DW_TX) * Cin;
    ctx.run({
      pipeline: ctx.pipeline('conv2d_depthwise', depthwiseWGSL(g, !!bias)),
      bindings,
      workgroups: grid1d(Math.ceil(tiles / DWG)).workgroups,
    });
  } else {
    ctx.run({
      pipeline: ctx.pipeline('conv2d_direct', directWGSL(g, !!bias)),
      bindings,
      workgroups: grid1d(Math.ceil((B * Ho * Wo * Cout) / DWG)).workgroups,
    });
  }
  return out;
}
