/**
 * Workgroup reductions for the GPU-shaped row kernels (softmax.ts, layernorm.ts): one workgroup
 * per row, its invocations striding along the row, then the partial results combined across the
 * workgroup. On a GPU a row per invocation (the lavapipe kernels) leaves each invocation a long
 * serial loop and, with rows of a few hundred to thousands of floats, reads that no two
 * neighbouring invocations share; a workgroup per row reads the row coalesced.
 *
 *   'workgroup': a tree in workgroup memory, log2(WG) steps with a barrier each;
 *   'subgroup':  subgroupMax / subgroupAdd within each subgroup (no barrier), then one value per
 *                subgroup through workgroup memory (one barrier). Needs the `subgroups` feature.
 *                Subgroups are taken to be consecutive ranges of local_invocation_index, as every
 *                implementation lays out a 1-D workgroup.
 *
 * The functions must be called in uniform control flow (every invocation of the workgroup).
 */

export type Reduction = 'workgroup' | 'subgroup';

/** `enable subgroups;` when needed. */
export const reduceEnable = (r: Reduction): string => (r === 'subgroup' ? 'enable subgroups;\n' : '');

/** Extra parameters of the entry point: the subgroup builtins. */
export const reduceParams = (r: Reduction): string =>
  (r === 'subgroup' ? ',\n        @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgLane: u32' : '');

/** Arguments to pass to the reduce functions after the value (matching reduceParams). */
export const reduceArgs = (r: Reduction): string => (r === 'subgroup' ? 'lid, sgSize, sgLane' : 'lid');

/**
 * WGSL of fn rowMax(v: f32, ...) -> f32, fn rowSum(v: f32, ...) -> f32 and fn rowSum2(v: vec2f, ...) -> vec2f
 * over a workgroup of `wg` invocations (a power of 2).
 */
export function reduceWGSL(r: Reduction, wg: number): string {
  if (wg & (wg - 1)) throw new Error(`reduceWGSL: workgroup size ${wg} is not a power of 2`);
  if (r === 'workgroup') {
    const tree = (name: string, T: string, op: (a: string, b: string) => string): string => `
fn ${name}(v: ${T}, lid: u32) -> ${T} {
  red_${T}[lid] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red_${T}[lid] = ${op(`red_${T}[lid]`, `red_${T}[lid + s]`)}; }
    workgroupBarrier();
  }
  let total = red_${T}[0];
  workgroupBarrier();   // before the array is used again
  return total;
}`;
    return `
var<workgroup> red_f32: array<f32, ${wg}>;
var<workgroup> red_vec2f: array<vec2f, ${wg}>;
${tree('rowMax', 'f32', (a, b) => `max(${a}, ${b})`)}
${tree('rowSum', 'f32', (a, b) => `${a} + ${b}`)}
${tree('rowSum2', 'vec2f', (a, b) => `${a} + ${b}`)}`;
  }
  // at most wg / 4 subgroups (subgroups have 4 invocations or more)
  const sub = (name: string, T: string, sgOp: string, op: (a: string, b: string) => string): string => `
fn ${name}(v: ${T}, lid: u32, sgSize: u32, sgLane: u32) -> ${T} {
  let s = ${sgOp}(v);
  if (sgLane == 0u) { red_${T}[lid / sgSize] = s; }
  workgroupBarrier();
  var total = red_${T}[0];
  for (var i = 1u; i < ${wg}u / sgSize; i++) { total = ${op('total', `red_${T}[i]`)}; }
  workgroupBarrier();   // before the array is used again
  return total;
}`;
  return `
var<workgroup> red_f32: array<f32, ${wg / 4}>;
var<workgroup> red_vec2f: array<vec2f, ${wg / 4}>;
${sub('rowMax', 'f32', 'subgroupMax', (a, b) => `max(${a}, ${b})`)}
${sub('rowSum', 'f32', 'subgroupAdd', (a, b) => `${a} + ${b}`)}
${sub('rowSum2', 'vec2f', 'subgroupAdd', (a, b) => `${a} + ${b}`)}`;
}
