import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { memoWGSL } from './util.js';

/**
 * Whether a tensor holds any NaN or infinity, as a flag on the GPU: flags[flag] |= 1 when it does.
 * Used on every weight as it is uploaded (weights.ts): the flags of a whole model are read back
 * once, at the end of its load, so a damaged file is named without a readback per tensor.
 *
 * The test is on the bits, not on the values (WGSL lets a compiler assume that no NaN or infinity
 * exists, so `x != x` may fold away): an f32 is not finite when its exponent bits are all ones
 * (0x7f800000), an f16 when its are (0x7c00). The data are read as u32 words, so f16 tensors are
 * checked two halves to a word (an odd count's last word is padded with a zero half by `write`).
 * Each invocation strides through the words and ORs its finding into the flag once; the grid is
 * capped, since the work is a pass over memory.
 */
const WG = 256;
const MAX_GROUPS = 256;

const finiteWGSL = memoWGSL((half: boolean): string => /* wgsl */ `
// ---- kernel: not_finite (${half ? 'f16' : 'f32'} words) ----
struct Params {
  words: u32,   // u32 words of the tensor's data
  flag: u32,    // which flag to set
}
@group(0) @binding(0) var<storage, read> data: array<u32>;
@group(0) @binding(1) var<storage, read_write> flags: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  var bad = false;
  for (var i = gid.x; i < P.words; i += stride) {
    let w = data[i];
    ${half
    ? 'bad = bad || (w & 0x7c00u) == 0x7c00u || (w & 0x7c000000u) == 0x7c000000u;'
    : 'bad = bad || (w & 0x7f800000u) == 0x7f800000u;'}
  }
  if (bad) { atomicOr(&flags[P.flag], 1u); }
}
`);

/**
 * Records: flags[flag] |= 1 if `t` holds a NaN or an infinity. `flags` is a storage buffer of u32.
 * Returns the dispatch's parameter buffer (its own, not the context's kept uniforms: a model's
 * load checks hundreds of tensors once), for the caller to destroy once the flags are read; null
 * when there is nothing to check.
 */
export function flagNotFinite(ctx: GpuContext, t: Tensor, flags: GPUBuffer, flag: number): GPUBuffer | null {
  const words = Math.ceil(t.byteLength / 4);
  if (words === 0) return null;
  const UNIFORM = 0x0040;
  const params = ctx.device.createBuffer({ size: 16, usage: UNIFORM, mappedAtCreation: true });
  new Uint32Array(params.getMappedRange()).set([words, flag]);
  params.unmap();
  ctx.run({
    pipeline: ctx.pipeline('not_finite', finiteWGSL(t.dtype === 'f16')),
    bindings: [t, flags, params],
    workgroups: [Math.min(MAX_GROUPS, Math.ceil(words / WG))],
  });
  return params;
}
