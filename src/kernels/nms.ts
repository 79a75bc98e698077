/**
 * Box non-maximum suppression on the GPU, with torchvision's CPU semantics (`nms`, which
 * `batched_nms` calls with one category): candidates by decreasing score, equal scores in index
 * order (its stable sort); each box not yet suppressed is kept and suppresses every later box whose
 * IoU with it, float32(inter / union) with areas, intersection and union in float32, is above the
 * threshold (tested exactly, ratio.ts).
 *
 * Input: the generator's per-candidate stats (mask_stats.ts: box at words 3..6, keep flag at word
 * 7) and scores; only candidates with the keep flag take part. Output: `kept` u32 [N + 1]: the
 * number kept, then the kept candidates' indices in NMS order. Nothing is read back here.
 *
 * Why this shape: two dispatches. `rank` sorts by counting (each candidate counts those that go
 * before it: O(N^2) compares, a few million for a 32x32 grid, spread over all invocations), which
 * gives the stable order without a sort network. `sweep` is the greedy pass, which is sequential
 * by nature: one workgroup walks the ranks in order, the suppressed flags in workgroup memory (a
 * bitset), and at each kept box its 256 invocations test the later boxes in parallel. No N x N
 * matrix is stored, so memory stays O(N).
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { MUL_WIDE_WGSL, ratioTest, ratioTestWGSL } from './ratio.js';
import { STATS_WORDS } from './mask_stats.js';
import { grid1d, memoWGSL } from './util.js';

const WG = 256;
/** Most candidates one sweep handles (the suppressed bitset lives in workgroup memory). */
export const NMS_MAX_CANDIDATES = 65536;

const rankWGSL = /* wgsl */ `
// ---- kernel: nms_rank ----
struct Params { n: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> stats: array<u32>;    // [n, ${STATS_WORDS}], keep flag at 7
@group(0) @binding(2) var<storage, read> scores: array<f32>;   // [n]
@group(0) @binding(3) var<storage, read_write> order: array<u32>; // [n]: rank -> candidate
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (i >= P.n || stats[i * ${STATS_WORDS}u + 7u] == 0u) { return; }
  let s = scores[i];
  var rank = 0u;
  for (var j = 0u; j < P.n; j++) {
    if (stats[j * ${STATS_WORDS}u + 7u] == 0u) { continue; }
    let t = scores[j];
    if (t > s || (t == s && j < i)) { rank++; }
  }
  order[rank] = i;
}
`;

const sweepWGSL = memoWGSL((suppress: string) => /* wgsl */ `
// ---- kernel: nms_sweep ----
struct Params { n: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> stats: array<u32>;
@group(0) @binding(2) var<storage, read> order: array<u32>;
@group(0) @binding(3) var<storage, read_write> kept: array<u32>;  // [n + 1]: count, then indices
var<workgroup> removed: array<atomic<u32>, ${NMS_MAX_CANDIDATES / 32}>;
var<workgroup> total: atomic<u32>;
var<workgroup> current: u32;
${MUL_WIDE_WGSL}${suppress}
fn box_of(c: u32) -> vec4f {
  let o = c * ${STATS_WORDS}u;
  return vec4f(f32(stats[o + 3u]), f32(stats[o + 4u]), f32(stats[o + 5u]), f32(stats[o + 6u]));
}
// torchvision's test, in float32: areas, intersection, union, then the exact ratio test
fn suppresses(a: vec4f, b: vec4f) -> bool {
  let area_a = (a.z - a.x) * (a.w - a.y);
  let area_b = (b.z - b.x) * (b.w - b.y);
  let w = max(0.0, min(a.z, b.z) - max(a.x, b.x));
  let h = max(0.0, min(a.w, b.w) - max(a.y, b.y));
  let inter = w * h;
  let uni = (area_a + area_b) - inter;
  return iou_above(u32(inter), u32(uni));
}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  // how many candidates take part (ranks 0 .. k-1 of order); clear the bitset
  var mine = 0u;
  for (var i = lid; i < P.n; i += ${WG}u) { mine += select(0u, 1u, stats[i * ${STATS_WORDS}u + 7u] != 0u); }
  for (var w = lid; w < ${NMS_MAX_CANDIDATES / 32}u; w += ${WG}u) { atomicStore(&removed[w], 0u); }
  if (lid == 0u) { atomicStore(&total, 0u); }
  workgroupBarrier();
  atomicAdd(&total, mine);
  workgroupBarrier();
  if (lid == 0u) { current = atomicLoad(&total); }
  let k = workgroupUniformLoad(&current);
  workgroupBarrier();   // everyone has read k before \`current\` is reused
  var nkept = 0u;
  for (var r = 0u; r < k; r++) {
    if (lid == 0u) { current = (atomicLoad(&removed[r >> 5u]) >> (r & 31u)) & 1u; }
    let gone = workgroupUniformLoad(&current);
    if (gone == 0u) {
      let c = order[r];
      if (lid == 0u) { kept[1u + nkept] = c; }
      nkept++;
      let a = box_of(c);
      for (var q = r + 1u + lid; q < k; q += ${WG}u) {
        if (((atomicLoad(&removed[q >> 5u]) >> (q & 31u)) & 1u) == 0u && suppresses(a, box_of(order[q]))) {
          atomicOr(&removed[q >> 5u], 1u << (q & 31u));
        }
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { kept[0] = nkept; }
}
`);

/**
 * Greedy box NMS of the candidates flagged in `stats` (mask_stats.ts layout), scored by `scores`.
 * Returns `kept` u32 [n + 1]: count, then candidate indices in NMS order (decreasing score).
 */
export function boxNms(ctx: GpuContext, stats: Tensor, scores: Tensor, n: number, iouThreshold: number): Tensor {
  if (n > NMS_MAX_CANDIDATES) {
    throw new RangeError(`boxNms: ${n} candidate masks in one crop; at most ${NMS_MAX_CANDIDATES} (use fewer points per side)`);
  }
  if (stats.size < n * STATS_WORDS || scores.size < n) throw new Error(`boxNms: stats for ${n} candidates expected`);
  const kept = ctx.empty([n + 1]);
  const order = ctx.empty([Math.max(n, 1)]);
  const params = ctx.uniform(new Uint32Array([n, 0, 0, 0]));
  if (n > 0) {
    ctx.run({ pipeline: ctx.pipeline('nms_rank', rankWGSL), bindings: [params, stats, scores, order], workgroups: grid1d(Math.ceil(n / WG)).workgroups });
  }
  const suppress = ratioTestWGSL('iou_above', ratioTest(iouThreshold, '>'));
  ctx.run({ pipeline: ctx.pipeline('nms_sweep', sweepWGSL(suppress)), bindings: [params, stats, order, kept], workgroups: [1] });
  order.release();
  return kept;
}
