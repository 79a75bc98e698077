import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d } from './util.js';

/**
 * 2-D convolution as torch.nn.Conv2d (zero padding, square stride/padding), on channels-last
 * activations with the weight in PyTorch's layout:
 *
 *   x [B, H, W, Cin], weight [Cout, Cin/groups, kh, kw], bias [Cout]  ->  out [B, Ho, Wo, Cout]
 *   Ho = floor((H + 2*padding - kh) / stride) + 1 (likewise Wo)
 *
 * Two kernels:
 * - `conv2d_gemm` (groups = 1, Cout >= 16): an implicit GEMM, M = B*Ho*Wo output pixels, N = Cout,
 *   K = Cin*kh*kw, each invocation holding a TM x TN register tile (TM pixels x TN channels).
 *   K is walked as (ky, kx, ci) so the activation reads run along the contiguous channel axis and
 *   no division is needed inside the loop; the weight is read in place at [co, ci, ky, kx].
 *   The pixels of a tile are the same for all invocations of a workgroup row, so their loads are
 *   uniform across the SIMD lanes of a CPU implementation; channels vary across lanes.
 * - `conv2d_direct` (anything else: depthwise, grouped, few output channels): one invocation per
 *   output value, looping over its group's input channels and the kernel window.
 */
export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  groups?: number;
  /** tiling override (benchmarks) */
  tile?: ConvTile;
}

interface ConvGeom {
  B: number; H: number; W: number; Cin: number;
  Cout: number; kh: number; kw: number;
  stride: number; pad: number; groups: number;
  Ho: number; Wo: number;
}

// ---------------------------------------------------------------- implicit GEMM (dense convs)

/** Register tile and workgroup shape of the implicit GEMM. */
const TM = 4; // output pixels per invocation (uniform across the workgroup's x lanes)
const TN = 4; // output channels per invocation (strided by WGX)
const WGX = 16; // invocations along N
const WGY = 4; // invocations along M

const gemmWGSL = (g: ConvGeom, hasBias: boolean): string => {
  const { B, H, W, Cin, Cout, kh, kw, stride, pad, Ho, Wo } = g;
  const M = B * Ho * Wo;
  const K = Cin * kh * kw;
  const BM = TM * WGY, BN = TN * WGX;
  const tilesN = Math.ceil(Cout / BN);
  const i_ = [...Array(TM).keys()], j_ = [...Array(TN).keys()];
  return /* wgsl */ `
// ---- kernel: conv2d_gemm ----
// x [${B}, ${H}, ${W}, ${Cin}], w [${Cout}, ${Cin}, ${kh}, ${kw}] -> out [${B}, ${Ho}, ${Wo}, ${Cout}]
// stride ${stride}, padding ${pad}; M = ${M}, N = ${Cout}, K = ${K}; tile ${BM} x ${BN}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(${hasBias ? 3 : 2}) var<storage, read_write> out: array<f32>;
${hasBias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}

@compute @workgroup_size(${WGX}, ${WGY})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) lid: vec3u) {
  let tile = wid.y * nwg.x + wid.x;
  let tn = tile % ${tilesN}u;
  let tm = tile / ${tilesN}u;
  if (tm * ${BM}u >= ${M}u) { return; }
  let mb = tm * ${BM}u + lid.y * ${TM}u;
  let n0 = tn * ${BN}u + lid.x;

  // Output pixel of each row of the tile: batch, top-left input corner.
  ${i_.map((i) => `let m${i} = min(mb + ${i}u, ${M - 1}u);
  let ox${i} = i32(m${i} % ${Wo}u);
  let oy${i} = i32((m${i} / ${Wo}u) % ${Ho}u);
  let xb${i} = (m${i} / ${Wo * Ho}u) * ${H * W * Cin}u;
  let iy${i} = oy${i} * ${stride} - ${pad};
  let ix${i} = ox${i} * ${stride} - ${pad};`).join('\n  ')}
  // Weight row of each column of the tile (clamped; out-of-range columns are not stored).
  ${j_.map((j) => `let wb${j} = min(n0 + ${j * WGX}u, ${Cout - 1}u) * ${K}u;`).join('\n  ')}

  ${i_.map((i) => `var acc${i} = vec4f(0.0);`).join('\n  ')}
  for (var ky = 0; ky < ${kh}; ky++) {
    for (var kx = 0; kx < ${kw}; kx++) {
      ${i_.map((i) => `let y${i} = iy${i} + ky; let x${i} = ix${i} + kx;
      let ok${i} = y${i} >= 0 && y${i} < ${H} && x${i} >= 0 && x${i} < ${W};
      let a0${i} = select(0u, xb${i} + (u32(y${i}) * ${W}u + u32(x${i})) * ${Cin}u, ok${i});
      let s${i} = select(0.0, 1.0, ok${i});`).join('\n      ')}
      let k0 = u32(ky * ${kw} + kx);
      for (var ci = 0u; ci < ${Cin}u; ci++) {
        let kk = ci * ${kh * kw}u + k0;
        let b = vec4f(${j_.map((j) => `w[wb${j} + kk]`).join(', ')});
        ${i_.map((i) => `acc${i} += (x[a0${i} + ci] * s${i}) * b;`).join('\n        ')}
      }
    }
  }
  ${hasBias ? `let bv = vec4f(${j_.map((j) => `bias[min(n0 + ${j * WGX}u, ${Cout - 1}u)]`).join(', ')});` : ''}
  ${i_.map((i) => `if (mb + ${i}u < ${M}u) {
    ${j_.map((j) => `if (n0 + ${j * WGX}u < ${Cout}u) { out[(mb + ${i}u) * ${Cout}u + n0 + ${j * WGX}u] = acc${i}[${j}]${hasBias ? ` + bv[${j}]` : ''}; }`).join('\n    ')}
  }`).join('\n  ')}
}
`;
};

/** Tile of the shared-memory implicit GEMM (same roles as in matmul.ts). */
export interface ConvTile { wx: number; wy: number; tm: number; tn: number; kt: number }
export const CONV_TILE: ConvTile = { wx: 8, wy: 8, tm: 4, tn: 4, kt: 16 };

const gemmSharedWGSL = (g: ConvGeom, hasBias: boolean, t: ConvTile): string => {
  const { B, H, W, Cin, Cout, kh, kw, stride, pad, Ho, Wo } = g;
  const { wx, wy, tm, tn, kt } = t;
  const M = B * Ho * Wo, K = Cin * kh * kw, N = Cout;
  const BM = wy * tm, BN = wx * tn, NT = wx * wy;
  if (NT % kt !== 0 || (BM * kt) % NT !== 0 || (BN * kt) % NT !== 0) throw new Error(`conv2d tile ${JSON.stringify(t)} does not divide`);
  const tilesN = Math.ceil(N / BN);
  // Staging: element e = lid + s*NT of a [rows][kt] block -> row e / kt, k-offset e % kt = lid % kt,
  // so each thread stages one fixed k column of the block and rows lid/kt + s*(NT/kt).
  const rs = NT / kt;
  const sA = (BM * kt) / NT, sB = (BN * kt) / NT;
  const rowsA = [...Array(sA).keys()], rowsB = [...Array(sB).keys()];
  const decl: string[] = [], inner: string[] = [], epi: string[] = [];
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) decl.push(`var acc${i}_${j} = 0.0;`);
  for (let i = 0; i < tm; i++) inner.push(`let a${i} = As[ak + ${i}u];`);
  for (let j = 0; j < tn; j++) inner.push(`let b${j} = Bs[bk + ${j * wx}u];`);
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) inner.push(`acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});`);
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) epi.push(`{
    let m = m0 + ty * ${tm}u + ${i}u; let n = n0 + tx + ${j * wx}u;
    if (m < ${M}u && n < ${N}u) { out[m * ${N}u + n] = acc${i}_${j}${hasBias ? ' + bias[n]' : ''}; }
  }`);
  return /* wgsl */ `
// ---- kernel: conv2d_gemm ----
// x [${B}, ${H}, ${W}, ${Cin}], w [${Cout}, ${Cin}, ${kh}, ${kw}] -> out [${B}, ${Ho}, ${Wo}, ${Cout}]
// stride ${stride}, padding ${pad}; implicit GEMM M = ${M} pixels, N = ${N}, K = ${K} as (ky, kx, ci)
// tile ${wx}x${wy} threads, ${tm}x${tn} per thread, K step ${kt}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
${hasBias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(${hasBias ? 3 : 2}) var<storage, read_write> out: array<f32>;

var<workgroup> As: array<f32, ${kt * BM}>; // [kt][BM] im2col block
var<workgroup> Bs: array<f32, ${kt * BN}>; // [kt][BN] weight block

@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * nwg.x + wid.x; // n-tile fastest
  if (g >= ${Math.ceil(M / BM) * tilesN}u) { return; }
  let tx = lid3.x; let ty = lid3.y;
  let n0 = (g % ${tilesN}u) * ${BN}u;
  let m0 = (g / ${tilesN}u) * ${BM}u;
  let kc = lid % ${kt}u; // this thread's k column in the staged blocks
  let r0 = lid / ${kt}u;
  // The output pixels whose im2col rows this thread stages: top-left input corner and batch offset.
  ${rowsA.map((s) => `let pm${s} = m0 + r0 + ${s * rs}u;
  let pv${s} = pm${s} < ${M}u;
  let pq${s} = min(pm${s}, ${M - 1}u);
  let py${s} = i32((pq${s} / ${Wo}u) % ${Ho}u) * ${stride} - ${pad};
  let px${s} = i32(pq${s} % ${Wo}u) * ${stride} - ${pad};
  let pb${s} = i32(pq${s} / ${Wo * Ho}u) * ${H * W * Cin};`).join('\n  ')}
  // The weight rows (output channels) this thread stages.
  ${rowsB.map((s) => `let wn${s} = n0 + r0 + ${s * rs}u;
  let wv${s} = wn${s} < ${N}u;
  let wr${s} = min(wn${s}, ${N - 1}u) * ${K}u;`).join('\n  ')}
  ${decl.join('\n  ')}
  for (var k0 = 0u; k0 < ${K}u; k0 += ${kt}u) {
    {
      let k = k0 + kc;
      let kv = k < ${K}u;
      let ci = k % ${Cin}u;
      let kyx = min(k / ${Cin}u, ${kh * kw - 1}u);
      let ky = i32(kyx / ${kw}u); let kx = i32(kyx % ${kw}u);
      ${rowsA.map((s) => `{
        let iy = py${s} + ky; let ix = px${s} + kx;
        let ok = kv && pv${s} && iy >= 0 && iy < ${H} && ix >= 0 && ix < ${W};
        let v = x[u32(select(0, pb${s} + (iy * ${W} + ix) * ${Cin} + i32(ci), ok))];
        As[kc * ${BM}u + r0 + ${s * rs}u] = select(0.0, v, ok);
      }`).join('\n      ')}
      let wk = ci * ${kh * kw}u + kyx; // weight [co, ci, ky, kx]
      ${rowsB.map((s) => `Bs[kc * ${BN}u + r0 + ${s * rs}u] = select(0.0, w[wr${s} + select(0u, wk, kv)], kv && wv${s});`).join('\n      ')}
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${kt}u; kk++) {
      let ak = kk * ${BM}u + ty * ${tm}u;
      let bk = kk * ${BN}u + tx;
      ${inner.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${epi.join('\n  ')}
}
`;
};

// ---------------------------------------------------------------- direct (grouped / small convs)

const DWG = 64;

const directWGSL = (g: ConvGeom, hasBias: boolean): string => {
  const { B, H, W, Cin, Cout, kh, kw, stride, pad, groups, Ho, Wo } = g;
  const cinG = Cin / groups, coutG = Cout / groups;
  const total = B * Ho * Wo * Cout;
  return /* wgsl */ `
// ---- kernel: conv2d_direct ----
// x [${B}, ${H}, ${W}, ${Cin}], w [${Cout}, ${cinG}, ${kh}, ${kw}] -> out [${B}, ${Ho}, ${Wo}, ${Cout}]
// stride ${stride}, padding ${pad}, groups ${groups}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
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
        acc += x[xa + c] * w[wa + c * ${kh * kw}u];
      }
    }
  }
  out[o] = acc;
}
`;
};

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
  if (x.dtype !== 'f32' || weight.dtype !== 'f32' || (bias && bias.dtype !== 'f32')) throw new Error('conv2d: f32 tensors only');
  const Ho = Math.floor((H + 2 * pad - kh) / stride) + 1;
  const Wo = Math.floor((W + 2 * pad - kw) / stride) + 1;
  if (Ho <= 0 || Wo <= 0) throw new Error(`conv2d: empty output for input ${H}x${W}, kernel ${kh}x${kw}`);
  const g: ConvGeom = { B, H, W, Cin, Cout, kh, kw, stride, pad, groups, Ho, Wo };
  const out = ctx.empty([B, Ho, Wo, Cout]);
  const bindings = bias ? [x, weight, bias, out] : [x, weight, out];

  if (groups === 1 && Cout >= 16 && opts.tile) {
    const t = opts.tile;
    const tiles = Math.ceil((B * Ho * Wo) / (t.wy * t.tm)) * Math.ceil(Cout / (t.wx * t.tn));
    ctx.run({
      pipeline: ctx.pipeline('conv2d_gemm', gemmSharedWGSL(g, !!bias, t)),
      bindings,
      workgroups: grid1d(tiles).workgroups,
    });
  } else if (groups === 1 && Cout >= 16) {
    // [B*Ho*Wo, Cout] = im2col(x) [B*Ho*Wo, Cin*kh*kw] @ weight^T
    const tiles = Math.ceil((B * Ho * Wo) / (TM * WGY)) * Math.ceil(Cout / (TN * WGX));
    ctx.run({
      pipeline: ctx.pipeline('conv2d_gemm', gemmWGSL(g, !!bias)),
      bindings,
      workgroups: grid1d(tiles).workgroups,
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
