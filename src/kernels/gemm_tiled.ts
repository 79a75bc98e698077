/**
 * The GPU-shaped GEMM, one generator for the matmul (matmul.ts) and the convolutions that run as an
 * implicit GEMM (conv2d.ts): out[b] = epilogue(A[b] · op(B[b])), A [M, K], op(B) [K, N].
 *
 * Why this shape: on a GPU, an invocation that reads its operands straight from storage (the
 * lavapipe kernel of matmul.ts) is bound by memory traffic; here a workgroup of 64-256 invocations
 * (2-8 NVIDIA warps, 1-4 AMD waves) computes a BM x BN output tile, and for each step of BK along
 * K it first copies a BM x BK block of A and a BK x BN block of B into workgroup memory, each value
 * read from storage once per tile instead of once per output. Then every invocation multiplies out
 * of workgroup memory into a TM x TN register tile: per k it reads TM + TN values and does TM * TN
 * fused multiply-adds, so the larger the register tile, the fewer workgroup-memory reads per FMA
 * (gpu.cpp's 8x8 per thread; ONNX Runtime Web's 4x4).
 *
 * - Loads from storage are vec4 along the contiguous axis (K for A and for a B stored [N, K]; N for
 *   a B stored [K, N]); the operand functions fall back to four scalar loads when a row length is
 *   not a multiple of 4.
 * - Blocks keep their storage layout in workgroup memory, whole vec4s written and read: A as
 *   [BM][BK/4] vec4s along k; a B stored [N, K] likewise, each output then a sum of vec4 dot
 *   products; a B stored [K, N] as [BK][BN/4] vec4s along n, each of a quad's 4 k scaling 4
 *   columns at once. (Transposing into workgroup memory needs single-component stores; lavapipe
 *   took several times longer to compile those.) Rows of k are padded by one vec4 so that the
 *   invocations reading different rows at once hit different banks.
 * - An invocation's rows and columns are strided by the invocation grid (rows ty + i*TY, columns
 *   tx + j*TX, or 4-column groups): neighbouring invocations store neighbouring outputs.
 * - Past M, N and K: the operand functions return zeros at k >= K (they enter the sums) and any
 *   valid value for rows past M or columns past N (those outputs are not stored), so the inner
 *   loop has no bounds checks.
 * - f16 staging (`aHalf`/`bHalf`, precision 'f16' or an f16 weight): the blocks are kept as f16 in
 *   workgroup memory (half the bytes, twice the reuse per byte); products and sums are f32.
 * - Everything is loops over compile-time constants: compact WGSL that GPU compilers unroll, and
 *   that lavapipe compiles in about a second (64x unrolled text takes it tens of seconds).
 *
 * Tile shapes (GEMM_TILES): 32x32 with 4x4 per invocation (64 invocations, BK 32: small outputs,
 * where bigger tiles would leave most of a GPU idle), 64x64 with 4x4 (256 invocations, BK 16: the
 * all-rounder), and 128x64 with 8x8 (128 invocations, BK 16: the most FMAs per byte of workgroup
 * memory read, for the large linears of the image encoder). All need at most 12 KiB of workgroup
 * memory (16 KiB is guaranteed).
 */

export interface GemmTile {
  /** output rows per workgroup */
  bm: number;
  /** output columns per workgroup */
  bn: number;
  /** depth of one staged step along K */
  bk: number;
  /** output rows per invocation (a multiple of 4) */
  tm: number;
  /** output columns per invocation (a multiple of 4) */
  tn: number;
}

export const GEMM_TILES = {
  tiled32: { bm: 32, bn: 32, bk: 32, tm: 4, tn: 4 },
  tiled64: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
  tiled128x64: { bm: 128, bn: 64, bk: 16, tm: 8, tn: 8 },
} as const satisfies Record<string, GemmTile>;

export type GemmTileName = keyof typeof GEMM_TILES;
export const GEMM_TILE_NAMES = Object.keys(GEMM_TILES) as GemmTileName[];

/** Invocations per workgroup of a tile shape. */
export const tileInvocations = (t: GemmTile): number => (t.bm / t.tm) * (t.bn / t.tn);

/** Bytes of workgroup memory of a tile shape. */
export const tileWorkgroupBytes = (t: GemmTile, aHalf: boolean, bHalf: boolean): number =>
  t.bk * (t.bm * (aHalf ? 2 : 4) + t.bn * (bHalf ? 2 : 4));

/** Output tiles of an M x N product (times the batch). */
export const tileCount = (t: GemmTile, M: number, N: number, batch = 1): number =>
  Math.ceil(M / t.bm) * Math.ceil(N / t.bn) * batch;

/** What the kernel computes: its operands, sizes and epilogue, as WGSL. */
export interface GemmSource {
  /**
   * Bindings, constants or the uniform struct, and these functions:
   *   fn loadA(b: u32, m: u32, k: u32) -> vec4f   A[b][m][k .. k+3]; zeros at k >= K; m may be >= M
   *   fn loadB(b: u32, n: u32, k: u32) -> vec4f   bAlongK: op(B)[b][k .. k+3][n] (zeros at k >= K);
   *                                               else op(B)[b][k][n .. n+3]; n may be >= N
   *   fn store(b: u32, m: u32, n: u32, v: f32)    the epilogue, called for m < M and n < N
   */
  decls: string;
  /** B is staged 4 consecutive k of one column at a time (B stored [N, K]), else 4 columns of one k */
  bAlongK: boolean;
  /** WGSL u32 expressions of the sizes and of the tile grid (tilesM * tilesN * batch = total) */
  M: string;
  N: string;
  K: string;
  tilesM: string;
  tilesN: string;
  total: string;
  /** blocks kept as f16 in workgroup memory */
  aHalf: boolean;
  bHalf: boolean;
  /** the source uses f16 (an f16 binding): `enable f16;` */
  f16: boolean;
  /** one comment line naming the kernel */
  title: string;
}

/** The WGSL of one GEMM kernel: tile shape `t`, operands and epilogue `src`. */
export function gemmTiledWGSL(t: GemmTile, src: GemmSource): string {
  const TX = t.bn / t.tn, TY = t.bm / t.tm, T = TX * TY;
  const KQ = t.bk / 4;                  // vec4s along k in a staged row
  const S = KQ + 1;                     // their stride: padded by one vec4 (bank conflicts)
  const aChunks = t.bm * KQ, bChunks = t.bn * KQ;
  if (t.tm % 4 || t.tn % 4 || t.bk % 4 || aChunks % T || bChunks % T) {
    throw new Error(`gemmTiledWGSL: tile ${JSON.stringify(t)} does not divide into vec4 chunks per invocation`);
  }
  const AT = src.aHalf ? 'vec4h' : 'vec4f', BT = src.bHalf ? 'vec4h' : 'vec4f';
  // B stored [N, K]: staged like A, [BN][BK/4] vec4s along k; each output is a sum of dot products.
  // B stored [K, N]: staged [BK][BN/4] vec4s along n; each k of a quad scales 4 columns at once.
  const K_MAJOR = src.bAlongK;
  const stageB = K_MAJOR
    ? `    for (var c = lid; c < ${bChunks}u; c += ${T}u) {
      let r = c / ${KQ}u;
      let kq = c % ${KQ}u;
      Bs[r * ${S}u + kq] = ${BT}(loadB(b, n0 + r, k0 + 4u * kq));
    }`
    : `    for (var c = lid; c < ${bChunks}u; c += ${T}u) {
      let kk = c / ${t.bn / 4}u;
      let nq = c % ${t.bn / 4}u;
      Bs[c] = ${BT}(loadB(b, n0 + 4u * nq, k0 + kk));
    }`;
  const inner = K_MAJOR
    ? `      var a: array<vec4f, ${t.tm}>;
      for (var i = 0u; i < ${t.tm}u; i++) { a[i] = vec4f(As[(ty + i * ${TY}u) * ${S}u + kq]); }
      for (var j = 0u; j < ${t.tn}u; j++) {
        let bj = vec4f(Bs[(tx + j * ${TX}u) * ${S}u + kq]);
        for (var i = 0u; i < ${t.tm}u; i++) { acc[i * ${t.tn}u + j] += dot(a[i], bj); }
      }`
    : `      var a: array<vec4f, ${t.tm}>;
      for (var i = 0u; i < ${t.tm}u; i++) { a[i] = vec4f(As[(ty + i * ${TY}u) * ${S}u + kq]); }
      for (var q = 0u; q < 4u; q++) {
        for (var j = 0u; j < ${t.tn / 4}u; j++) {
          let bj = vec4f(Bs[(4u * kq + q) * ${t.bn / 4}u + tx + j * ${TX}u]);
          for (var i = 0u; i < ${t.tm}u; i++) {
            acc[i * ${t.tn / 4}u + j] = fma(vec4f(a[i][q]), bj, acc[i * ${t.tn / 4}u + j]);
          }
        }
      }`;
  const epilogue = K_MAJOR
    ? `      for (var j = 0u; j < ${t.tn}u; j++) {
        let n = n0 + tx + j * ${TX}u;
        if (n < N) { store(b, m, n, acc[i * ${t.tn}u + j]); }
      }`
    : `      for (var j = 0u; j < ${t.tn / 4}u; j++) {
        let n = n0 + 4u * (tx + j * ${TX}u);
        let v = acc[i * ${t.tn / 4}u + j];
        for (var e = 0u; e < 4u; e++) {
          if (n + e < N) { store(b, m, n + e, v[e]); }
        }
      }`;
  return /* wgsl */ `${src.f16 || src.aHalf || src.bHalf ? 'enable f16;\n' : ''}
// ---- kernel: ${src.title}; GEMM tile ${t.bm}x${t.bn}x${t.bk}, ${t.tm}x${t.tn} per invocation, ${T} invocations${src.aHalf || src.bHalf ? `, f16 staging (${src.aHalf ? 'A' : ''}${src.bHalf ? 'B' : ''})` : ''} ----
${src.decls}

var<workgroup> As: array<${AT}, ${t.bm * S}>;   // [BM][BK/4 + 1]: a row's k as vec4s
var<workgroup> Bs: array<${BT}, ${K_MAJOR ? t.bn * S : (t.bk * t.bn) / 4}>;   // ${K_MAJOR ? '[BN][BK/4 + 1]: a column\'s k as vec4s' : '[BK][BN/4]: a k\'s columns as vec4s'}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * nwg.x + wid.x;   // flat tile index: n-tile fastest, then m-tile, then batch
  if (g >= ${src.total}) { return; }
  let tilesN = ${src.tilesN};
  let mb = g / tilesN;
  let n0 = (g % tilesN) * ${t.bn}u;
  let m0 = (mb % ${src.tilesM}) * ${t.bm}u;
  let b = mb / ${src.tilesM};
  let K = ${src.K};
  let tx = lid % ${TX}u;   // this invocation's columns: ${K_MAJOR ? `tx + j*${TX}` : `4*(tx + j*${TX}) .. +3`}
  let ty = lid / ${TX}u;   // its rows: ty + i*${TY}

  var acc: array<${K_MAJOR ? `f32, ${t.tm * t.tn}` : `vec4f, ${(t.tm * t.tn) / 4}`}>;
  for (var k0 = 0u; k0 < K; k0 += ${t.bk}u) {
    // stage the A and B blocks of this k step
    for (var c = lid; c < ${aChunks}u; c += ${T}u) {
      let r = c / ${KQ}u;
      let kq = c % ${KQ}u;
      As[r * ${S}u + kq] = ${AT}(loadA(b, m0 + r, k0 + 4u * kq));
    }
${stageB}
    workgroupBarrier();

    for (var kq = 0u; kq < ${KQ}u; kq++) {
${inner}
    }
    workgroupBarrier();
  }

  let M = ${src.M};
  let N = ${src.N};
  for (var i = 0u; i < ${t.tm}u; i++) {
    let m = m0 + ty + i * ${TY}u;
    if (m < M) {
${epilogue}
    }
  }
}
`;
}

/**
 * WGSL of `fn NAME(i: u32, valid: vec4<bool>) -> vec4f`: four consecutive elements of `arr`
 * starting at element i, zero where `valid` is false. `vec4`: arr is an array<vec4f|vec4h> and i a
 * multiple of 4 (one load); else an array<f32|f16> read one element at a time, at addresses kept
 * inside the array.
 */
export function load4WGSL(name: string, arr: string, vec4: boolean): string {
  if (vec4) {
    return `fn ${name}(i: u32, valid: vec4<bool>) -> vec4f {
  return select(vec4f(0.0), vec4f(${arr}[min(i, arrayLength(&${arr}) * 4u - 4u) / 4u]), valid);
}`;
  }
  return `fn ${name}(i: u32, valid: vec4<bool>) -> vec4f {
  let last = arrayLength(&${arr}) - 1u;
  return select(vec4f(0.0), vec4f(f32(${arr}[min(i, last)]), f32(${arr}[min(i + 1u, last)]),
                                  f32(${arr}[min(i + 2u, last)]), f32(${arr}[min(i + 3u, last)])), valid);
}`;
}
