import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d } from './util.js';

/**
 * Axial rotary position encoding (RoPE) of the memory attention (`compute_axial_cis` and
 * `apply_rotary_enc` in the reference's position_encoding.py).
 *
 * A head of d channels is read as d/2 complex numbers (channels 2j, 2j+1 = real, imaginary). For a
 * token at grid position (x, y) of an end_x x end_y map (token index t = y * end_x + x), pair j is
 * multiplied by exp(i * angle) with
 *   angle = x * freq[j]          for j <  d/4
 *   angle = y * freq[j - d/4]    for j >= d/4
 *   freq[i] = 1 / theta^(4i / d)
 * so the first half of the pairs encodes the column, the second half the row.
 *
 * The (cos, sin) table depends only on (d, end_x, end_y, theta): it is computed once on the CPU,
 * rounding each step to f32 as PyTorch does, and uploaded once (`RopeTable`).
 */

/** The table on the CPU: [end_x * end_y, d/2, 2] = (cos, sin) per position and pair. */
export function axialRopeTableData(dim: number, endX: number, endY: number, theta = 10000): Float32Array {
  if (dim % 4 !== 0) throw new Error(`rope: head dim ${dim} must be a multiple of 4`);
  const f = Math.fround;
  const nf = dim / 4;
  // freqs = 1 / theta ** (arange(0, dim, 4) / dim), in f32
  const freqs = new Float32Array(nf);
  for (let i = 0; i < nf; i++) freqs[i] = f(1 / f(Math.pow(theta, f(f(4 * i) / dim))));
  const half = dim / 2;
  const n = endX * endY;
  const out = new Float32Array(n * half * 2);
  for (let t = 0; t < n; t++) {
    const tx = t % endX, ty = Math.floor(t / endX);
    for (let j = 0; j < half; j++) {
      const a = j < nf ? f(tx * freqs[j]!) : f(ty * freqs[j - nf]!);
      out[(t * half + j) * 2] = f(Math.cos(a));
      out[(t * half + j) * 2 + 1] = f(Math.sin(a));
    }
  }
  return out;
}

/** A rotary table on the GPU for one (head dim, grid, theta). */
export class RopeTable {
  private constructor(
    /** [positions, d/2, 2] */
    readonly table: Tensor,
    readonly dim: number,
    readonly endX: number,
    readonly endY: number,
  ) {}

  static create(ctx: GpuContext, dim: number, endX: number, endY: number, theta = 10000): RopeTable {
    const data = axialRopeTableData(dim, endX, endY, theta);
    return new RopeTable(ctx.upload(data, [endX * endY, dim / 2, 2]), dim, endX, endY);
  }

  get positions(): number {
    return this.endX * this.endY;
  }

  release(): void {
    this.table.release();
  }
}

export interface RopeOptions {
  /** heads packed in the channel axis (as reshape(B, N, H, d)); default 1 */
  numHeads?: number;
  /**
   * Rotate only the first `count` tokens of each batch item (the rest, e.g. object-pointer
   * tokens, are left as they are). Default: all.
   */
  count?: number;
  /**
   * `rope_k_repeat`: token t uses position t % positions (memories of several frames, each a full
   * grid). Without it the rotated tokens must be exactly the table's positions.
   */
  repeat?: boolean;
  /** Write here instead of in place (tokens past `count` are copied unchanged). */
  out?: Tensor;
}

const WG = 64;

const ropeWGSL = (B: number, N: number, C: number, dim: number, count: number, positions: number, inPlace: boolean): string => {
  const half = dim / 2;
  const pairsPerToken = C / 2;
  const total = B * N * pairsPerToken;
  return /* wgsl */ `
// ---- kernel: rope (B ${B}, N ${N}, C ${C}, d ${dim}, rotated ${count}, positions ${positions}) ----
@group(0) @binding(0) var<storage, read_write> x: array<vec2f>;
@group(0) @binding(1) var<storage, read> tab: array<vec2f>;   // [positions, d/2] (cos, sin)
${inPlace ? '' : '@group(0) @binding(2) var<storage, read_write> out: array<vec2f>;'}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid;   // pair index over [B, N, C/2]
  if (i >= ${total}u) { return; }
  let n = (i / ${pairsPerToken}u) % ${N}u;            // token within its batch item
  let j = (i % ${pairsPerToken}u) % ${half}u;         // pair within its head
  let v = x[i];
  var r = v;
  if (n < ${count}u) {
    let cs = tab[(n % ${positions}u) * ${half}u + j];
    // (re + i im) * (cos + i sin)
    r = vec2f(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x);
  }
  ${inPlace ? 'if (n < ' + count + 'u) { x[i] = r; }' : 'out[i] = r;'}
}
`;
};

/**
 * Applies the axial rotary encoding to x [B, N, H*d] (or [N, H*d]), in place unless `out` is given.
 * Returns the rotated tensor (x itself when in place).
 */
export function applyRope(ctx: GpuContext, x: Tensor, rope: RopeTable, opts: RopeOptions = {}): Tensor {
  if (x.shape.length !== 2 && x.shape.length !== 3) throw new Error(`rope: x must be [B, N, C] or [N, C], got [${x.shape}]`);
  const [B, N, C] = (x.shape.length === 3 ? x.shape : [1, ...x.shape]) as [number, number, number];
  const H = opts.numHeads ?? 1;
  if (C !== H * rope.dim) throw new Error(`rope: x [${x.shape}] does not have ${H} heads of ${rope.dim} channels`);
  const count = opts.count ?? N;
  if (!Number.isInteger(count) || count < 0 || count > N) throw new Error(`rope: count ${count} out of range for ${N} tokens`);
  if (opts.repeat ? count % rope.positions !== 0 : count !== rope.positions && count !== 0) {
    throw new Error(`rope: ${count} rotated tokens do not fit a ${rope.endX}x${rope.endY} grid${opts.repeat ? ' (repeated)' : ''}`);
  }
  if (opts.out && opts.out.size !== x.size) throw new Error(`rope: out [${opts.out.shape}] does not match x [${x.shape}]`);
  if (x.dtype !== 'f32') throw new Error('rope: x must be f32');
  const inPlace = !opts.out;
  if (x.size === 0 || (inPlace && count === 0)) return x;
  ctx.run({
    pipeline: ctx.pipeline('rope', ropeWGSL(B, N, C, rope.dim, count, rope.positions, inPlace)),
    bindings: inPlace ? [x, rope.table] : [x, rope.table, opts.out!],
    workgroups: grid1d(Math.ceil(x.size / 2 / WG)).workgroups,
  });
  return opts.out ?? x;
}
