/**
 * Connected components of binary images on the GPU, with the semantics of the official
 * `get_connected_components` (efficient_track_anything/utils/misc.py and its CUDA extension
 * csrc/connected_components.cu):
 *
 *   - 8-connectivity (the reference's; 4-connectivity is offered as an option);
 *   - labels [N, H, W]: 0 on background, and on foreground 1 + the component's representative,
 *     an in-image pixel index. With 8-connectivity the image is cut into 2x2 blocks (every pixel of
 *     a block touches every other, so a block lies in one component) and the representative is the
 *     smallest top-left pixel index of the blocks the component touches, which is what the CUDA
 *     extension's block union-find produces. With 4-connectivity it is the component's smallest
 *     pixel index;
 *   - areas [N, H, W]: 0 on background, the pixel count of the component on foreground.
 *
 * Algorithm: a lock-free union-find over the blocks (Playne & Hawick; Allegretti et al.'s block
 * union-find), whose roots are always the smallest index of their tree because unions only ever
 * lower a parent with atomicMin. It needs no iteration to a fixed point, so there is no readback
 * and no convergence check: five dispatches, each one pass over the pixels or blocks.
 *   1. init      parent[i] = i, count[i] = 0                     (per pixel)
 *   2. merge     union with the foreground neighbours above and to the left
 *                (up-left, up, up-right, left blocks)            (per block)
 *   3. compress  parent[b] = find(b): every block now points at its root (per block)
 *   4. label     labels = root + 1 on foreground, atomicAdd(count[root], 1)   (per pixel)
 *   5. areas     areas = count[root] on foreground               (per pixel)
 * The foreground is decided from an f32 input by a threshold (x > t, or x <= t with `below`), so
 * mask logits need no separate binarisation pass. All sizes are uniforms: one pipeline per kernel
 * and connectivity serves every size and both foreground tests.
 *
 * Unlike the CUDA extension (which raises on odd H or W, and the official postprocessing then
 * silently skips the step), odd sizes are supported: the blocks at the right/bottom edge are
 * partial.
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d } from './util.js';

const WG = 256;

export type Connectivity = 4 | 8;

export interface ConnectedComponentsOptions {
  /** foreground is x > threshold, or x <= threshold with `below` (default 0) */
  threshold?: number;
  /** foreground is x <= threshold (background components of a mask, i.e. holes) */
  below?: boolean;
  /** 8 (default, the reference's) or 4 */
  connectivity?: Connectivity;
}

export interface ConnectedComponents {
  /** [..., H, W]: 0 on background, 1 + representative pixel index (within its image) on foreground */
  labels: Tensor;
  /** [..., H, W]: 0 on background, the component's pixel count on foreground */
  areas: Tensor;
}

// ------------------------------------------------------------------------------------------------
// WGSL

/** Uniform shared by all passes: image count, size, foreground test. */
const PARAMS = /* wgsl */ `
struct Params {
  n: u32,        // images
  h: u32,
  w: u32,
  thr: f32,
  below: u32,    // 1: foreground is x <= thr; 0: x > thr
}
@group(0) @binding(0) var<uniform> P: Params;
`;

const FG = /* wgsl */ `
fn is_fg(v: f32) -> bool {
  return select(v > P.thr, v <= P.thr, P.below == 1u);
}
// pixel (r, c) of the image starting at base; out of bounds (including r or c = -1 wrapped to a
// huge u32) is background
fn fg_at(base: u32, r: u32, c: u32) -> bool {
  return r < P.h && c < P.w && is_fg(x[base + r * P.w + c]);
}
`;

/** find (no writes: only the compress pass shortens paths, as the reference) and union. */
const UNION_FIND = /* wgsl */ `
fn find(n0: u32) -> u32 {
  var n = n0;
  loop {
    let p = atomicLoad(&parent[n]);
    if (p == n) { break; }
    n = p;
  }
  return n;
}

// Links the larger of the two roots under the smaller one. If the root we tried to link was linked
// by someone else in the meantime (atomicMin returns another value), our write may have cut that
// link, so we go on uniting with the value we displaced.
fn unite(a0: u32, b0: u32) {
  var a = a0;
  var b = b0;
  loop {
    a = find(a);
    b = find(b);
    if (a < b) {
      let old = atomicMin(&parent[b], a);
      if (old == b) { break; }
      b = old;
    } else if (b < a) {
      let old = atomicMin(&parent[a], b);
      if (old == a) { break; }
      a = old;
    } else {
      break;
    }
  }
}
`;

/** Flat invocation index t over a grid1d layout. */
const HEAD = /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.y * nwg.x + wid.x) * ${WG}u + lid;`;

/** The union-find node of pixel (r, c): its 2x2 block's top-left pixel, or itself. */
const nodeOf = (conn: Connectivity): string => conn === 8
  ? 'fn node_of(base: u32, r: u32, c: u32) -> u32 { return base + (r & ~1u) * P.w + (c & ~1u); }'
  : 'fn node_of(base: u32, r: u32, c: u32) -> u32 { return base + r * P.w + c; }';

const initWGSL = /* wgsl */ `
// ---- kernel: cc_init ----
${PARAMS}
@group(0) @binding(1) var<storage, read_write> parent: array<u32>;
@group(0) @binding(2) var<storage, read_write> count: array<u32>;
${HEAD}
  if (t >= P.n * P.h * P.w) { return; }
  parent[t] = t;
  count[t] = 0u;
}
`;

const mergeWGSL = (conn: Connectivity): string => /* wgsl */ `
// ---- kernel: cc_merge (${conn}-connectivity) ----
${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> parent: array<atomic<u32>>;
${FG}${UNION_FIND}${HEAD}
${conn === 8 ? `
  // one invocation per 2x2 block (row, col even); a, b top pixels, c bottom-left
  let bw = (P.w + 1u) / 2u;
  let bh = (P.h + 1u) / 2u;
  if (t >= P.n * bh * bw) { return; }
  let img = t / (bh * bw);
  let k = t % (bh * bw);
  let row = (k / bw) * 2u;
  let col = (k % bw) * 2u;
  let base = img * P.h * P.w;
  let me = base + row * P.w + col;
  let a = fg_at(base, row, col);
  let b = fg_at(base, row, col + 1u);
  let c = fg_at(base, row + 1u, col);
  // up-left block: only pixel a touches it, through (row-1, col-1)
  if (a && fg_at(base, row - 1u, col - 1u)) { unite(me, me - 2u * P.w - 2u); }
  // up block: a or b touch both (row-1, col) and (row-1, col+1)
  if ((a || b) && (fg_at(base, row - 1u, col) || fg_at(base, row - 1u, col + 1u))) { unite(me, me - 2u * P.w); }
  // up-right block: only b touches it, through (row-1, col+2)
  if (b && fg_at(base, row - 1u, col + 2u)) { unite(me, me - 2u * P.w + 2u); }
  // left block: a or c touch both (row, col-1) and (row+1, col-1)
  if ((a || c) && (fg_at(base, row, col - 1u) || fg_at(base, row + 1u, col - 1u))) { unite(me, me - 2u); }
  // (the other four neighbours are handled by the blocks down-left, down, down-right, right)` : `
  // one invocation per pixel: up and left neighbours
  if (t >= P.n * P.h * P.w) { return; }
  let base = (t / (P.h * P.w)) * P.h * P.w;
  let row = (t - base) / P.w;
  let col = (t - base) % P.w;
  if (!fg_at(base, row, col)) { return; }
  if (fg_at(base, row - 1u, col)) { unite(t, t - P.w); }
  if (fg_at(base, row, col - 1u)) { unite(t, t - 1u); }`}
}
`;

const compressWGSL = (conn: Connectivity): string => /* wgsl */ `
// ---- kernel: cc_compress (${conn}-connectivity) ----
${PARAMS}
@group(0) @binding(1) var<storage, read_write> parent: array<atomic<u32>>;
fn find(n0: u32) -> u32 {
  var n = n0;
  loop {
    let p = atomicLoad(&parent[n]);
    if (p == n) { break; }
    n = p;
  }
  return n;
}
${HEAD}
${conn === 8 ? `
  let bw = (P.w + 1u) / 2u;
  let bh = (P.h + 1u) / 2u;
  if (t >= P.n * bh * bw) { return; }
  let img = t / (bh * bw);
  let k = t % (bh * bw);
  let node = img * P.h * P.w + (k / bw) * 2u * P.w + (k % bw) * 2u;` : `
  if (t >= P.n * P.h * P.w) { return; }
  let node = t;`}
  // roots no longer change; each node writes only its own entry (others reading it see either
  // an ancestor or the root, both on the way to the same root)
  atomicStore(&parent[node], find(node));
}
`;

const labelWGSL = (conn: Connectivity): string => /* wgsl */ `
// ---- kernel: cc_label (${conn}-connectivity) ----
${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> parent: array<u32>;
@group(0) @binding(3) var<storage, read_write> count: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> labels: array<f32>;
${FG}
${nodeOf(conn)}
${HEAD}
  if (t >= P.n * P.h * P.w) { return; }
  let base = (t / (P.h * P.w)) * P.h * P.w;
  let row = (t - base) / P.w;
  let col = (t - base) % P.w;
  if (!is_fg(x[t])) { labels[t] = 0.0; return; }
  let root = parent[node_of(base, row, col)];
  labels[t] = f32(root - base + 1u);
  atomicAdd(&count[root], 1u);
}
`;

const areaWGSL = (conn: Connectivity): string => /* wgsl */ `
// ---- kernel: cc_area (${conn}-connectivity) ----
${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> parent: array<u32>;
@group(0) @binding(3) var<storage, read> count: array<u32>;
@group(0) @binding(4) var<storage, read_write> areas: array<f32>;
${FG}
${nodeOf(conn)}
${HEAD}
  if (t >= P.n * P.h * P.w) { return; }
  let base = (t / (P.h * P.w)) * P.h * P.w;
  let row = (t - base) / P.w;
  let col = (t - base) % P.w;
  if (!is_fg(x[t])) { areas[t] = 0.0; return; }
  areas[t] = f32(count[parent[node_of(base, row, col)]]);
}
`;

// ------------------------------------------------------------------------------------------------
// wrapper

/**
 * Labels the connected components of the foreground of x [..., H, W] (leading axes are a batch of
 * independent images, like the reference's [N, 1, H, W]) and gives each foreground pixel its
 * component's area. Records GPU work only (no readback).
 */
export function connectedComponents(ctx: GpuContext, x: Tensor, opts: ConnectedComponentsOptions = {}): ConnectedComponents {
  if (x.shape.length < 2) throw new Error(`connectedComponents: x [${x.shape}] has no [H, W] axes`);
  if (x.dtype !== 'f32') throw new Error('connectedComponents: x must be f32');
  const H = x.shape[x.shape.length - 2]!, W = x.shape[x.shape.length - 1]!;
  const n = H * W === 0 ? 0 : x.size / (H * W);
  // labels and areas are exact integers in f32 up to 2^24
  if (H * W > 1 << 24) throw new Error(`connectedComponents: ${H}x${W} images are too large for exact f32 labels`);
  const conn = opts.connectivity ?? 8;
  if (conn !== 8 && conn !== 4) throw new Error(`connectedComponents: connectivity ${String(conn)} is not 4 or 8`);
  // union-find over one buffer: not tiled (the predictors label low-res masks, S/4 x S/4)
  if (x.size * 4 > ctx.maxBindingBytes) {
    throw new RangeError(`connectedComponents: [${x.shape}] is ${x.size * 4} bytes, more than one GPU binding holds (${ctx.maxBindingBytes}); label fewer or smaller images at once`);
  }
  const labels = ctx.empty(x.shape);
  const areas = ctx.empty(x.shape);
  if (x.size === 0) return { labels, areas };

  const params = ctx.uniform(new Uint32Array([n, H, W, f32bits(opts.threshold ?? 0), opts.below ? 1 : 0]));
  const parent = ctx.allocBuffer(x.size * 4);
  const count = ctx.allocBuffer(x.size * 4);
  const pixels = grid1d(Math.ceil(x.size / WG)).workgroups;
  const nodes = conn === 8 ? grid1d(Math.ceil((n * Math.ceil(H / 2) * Math.ceil(W / 2)) / WG)).workgroups : pixels;

  ctx.run({ pipeline: ctx.pipeline('cc_init', initWGSL), bindings: [params, parent, count], workgroups: pixels });
  ctx.run({ pipeline: ctx.pipeline('cc_merge', mergeWGSL(conn)), bindings: [params, x, parent], workgroups: nodes });
  ctx.run({ pipeline: ctx.pipeline('cc_compress', compressWGSL(conn)), bindings: [params, parent], workgroups: nodes });
  ctx.run({ pipeline: ctx.pipeline('cc_label', labelWGSL(conn)), bindings: [params, x, parent, count, labels], workgroups: pixels });
  ctx.run({ pipeline: ctx.pipeline('cc_area', areaWGSL(conn)), bindings: [params, x, parent, count, areas], workgroups: pixels });
  ctx.recycle(parent);
  ctx.recycle(count);
  return { labels, areas };
}

/** The bits of a number rounded to f32, for uniforms. */
export function f32bits(v: number): number {
  return new Uint32Array(new Float32Array([v]).buffer)[0]!;
}
