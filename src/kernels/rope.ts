import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d, MAX_GROUPS, memoWGSL } from './util.js';

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

/**
 * One kernel per mode (in place or into `out`) and vector width; the sizes are uniforms, so every
 * shape shares the variant's pipeline: the memory a video attends to grows frame by frame, and a
 * pipeline compile per frame would cost more than the frame.
 *
 * Grid: z is the batch item; x (and y past 65535 workgroups) runs over its N tokens times the
 * d/4 vec4s (two pairs each; d is a multiple of 4) of one head. An invocation rotates that vec4 in
 * every head with the same table entry. Divisions by a uniform are
 * scalarised on lavapipe, so this layout keeps them to two per invocation.
 */
const ropeWGSL = memoWGSL((inPlace: boolean): string => {
  // (re + i im) * (cos + i sin) for the two pairs (x, y) and (z, w)
  const rot = 'vec4f(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x, v.z * cs.z - v.w * cs.w, v.z * cs.w + v.w * cs.z)';
  return /* wgsl */ `
// ---- kernel: rope (${inPlace ? 'in place' : 'into out'}) ----
struct Sizes {
  perItem: u32,     // N * hw: invocations per batch item
  hw: u32,          // vec4s per head: d/4
  N: u32,           // tokens per batch item
  H: u32,           // heads
  count: u32,       // tokens rotated at the start of each batch item
  positions: u32,   // rows of the table
}
@group(0) @binding(0) var<storage, read_write> x: array<vec4f>;   // [B, N, H, d/4]
@group(0) @binding(1) var<storage, read> tab: array<vec4f>;       // [positions, d/4]: two (cos, sin) pairs
${inPlace ? '@group(0) @binding(2) var<uniform> Z: Sizes;' : `@group(0) @binding(2) var<storage, read_write> out: array<vec4f>;
@group(0) @binding(3) var<uniform> Z: Sizes;`}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wid.y * nwg.x + wid.x) * ${WG}u + lid;   // (token, vec4 within a head) of item wid.z
  if (e >= Z.perItem) { return; }
  let n = e / Z.hw;                                  // token within its batch item
  let j = e - n * Z.hw;                              // vec4 within its head
  let base = (wid.z * Z.N + n) * Z.H * Z.hw + j;     // x index of head 0
${inPlace ? `  if (n >= Z.count) { return; }
  let cs = tab[(n % Z.positions) * Z.hw + j];
  for (var h = 0u; h < Z.H; h++) {
    let v = x[base + h * Z.hw];
    x[base + h * Z.hw] = ${rot};
  }` : `  if (n < Z.count) {
    let cs = tab[(n % Z.positions) * Z.hw + j];
    for (var h = 0u; h < Z.H; h++) {
      let v = x[base + h * Z.hw];
      out[base + h * Z.hw] = ${rot};
    }
  } else {
    for (var h = 0u; h < Z.H; h++) { out[base + h * Z.hw] = x[base + h * Z.hw]; }
  }`}
}
`;
});

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
  const hw = rope.dim / 4; // vec4s per head (RopeTable makes d a multiple of 4)
  if (B > MAX_GROUPS) throw new Error(`rope: ${B} batch items (at most ${MAX_GROUPS})`);
  const [gx, gy] = grid1d(Math.ceil((N * hw) / WG)).workgroups;
  const sizes = ctx.uniform(new Uint32Array([N * hw, hw, N, H, count, rope.positions]));
  ctx.run({
    pipeline: ctx.pipeline('rope', ropeWGSL(inPlace)),
    bindings: inPlace ? [x, rope.table, sizes] : [x, rope.table, opts.out!, sizes],
    workgroups: [gx, gy, B],
  });
  return opts.out ?? x;
}
