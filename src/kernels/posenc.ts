import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';

/**
 * The sine position encoding of a feature map (PositionEmbeddingSine._pe in the reference's
 * position_encoding.py), channels-last: [H, W, numPosFeats].
 *
 * With F = numPosFeats / 2 features per axis, positions y = 1..H and x = 1..W, normalised as
 * y / (H + 1e-6) * scale (x likewise), and dim_t[i] = temperature^(2 * floor(i / 2) / F):
 *   channel k < F:   the y part, feature i = k:      sin(y / dim_t[i]) for even i, cos for odd i
 *   channel k >= F:  the x part, feature i = k - F:  the same with x
 * (the reference's stack of sin over even and cos over odd features, flattened, interleaves them).
 *
 * The table depends only on its size, so it is computed on the CPU, rounding every step to f32 as
 * PyTorch does, and uploaded; callers keep it for the life of the model.
 */
export interface PositionEmbeddingSineOptions {
  temperature?: number;
  normalize?: boolean;
  scale?: number;
}

/** The table as f32 values on the CPU: [H, W, numPosFeats] row-major. */
export function positionEmbeddingSineData(H: number, W: number, numPosFeats: number,
  opts: PositionEmbeddingSineOptions = {}): Float32Array {
  if (numPosFeats % 2 !== 0) throw new Error(`positionEmbeddingSine: numPosFeats ${numPosFeats} must be even`);
  const f = Math.fround;
  const temperature = opts.temperature ?? 10000;
  const normalize = opts.normalize ?? true;
  const scale = f(opts.scale ?? 2 * Math.PI);
  const F = numPosFeats / 2;
  const eps = 1e-6;
  // dim_t = temperature ** (2 * (arange(F) // 2) / F), in f32
  const dimT = new Float32Array(F);
  for (let i = 0; i < F; i++) dimT[i] = f(Math.pow(temperature, f(f(2 * Math.floor(i / 2)) / F)));
  // normalised positions: (p / (last + eps)) * scale, in f32
  const embed = (n: number): Float32Array => {
    const e = new Float32Array(n);
    const last = f(n + eps);
    for (let p = 0; p < n; p++) e[p] = normalize ? f(f((p + 1) / last) * scale) : p + 1;
    return e;
  };
  const ye = embed(H), xe = embed(W);
  // per-axis features: feats[p * F + i]
  const feats = (e: Float32Array): Float32Array => {
    const out = new Float32Array(e.length * F);
    for (let p = 0; p < e.length; p++) for (let i = 0; i < F; i++) {
      const v = f(e[p]! / dimT[i]!);
      out[p * F + i] = i % 2 === 0 ? Math.sin(v) : Math.cos(v);
    }
    return out;
  };
  const fy = feats(ye), fx = feats(xe);
  const out = new Float32Array(H * W * numPosFeats);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const o = (y * W + x) * numPosFeats;
    out.set(fy.subarray(y * F, (y + 1) * F), o); // pos_y first
    out.set(fx.subarray(x * F, (x + 1) * F), o + F); // then pos_x
  }
  return out;
}

/** PositionEmbeddingSine for an H x W map: [H, W, numPosFeats] on the GPU. */
export function positionEmbeddingSine(ctx: GpuContext, H: number, W: number, numPosFeats: number,
  opts: PositionEmbeddingSineOptions = {}): Tensor {
  return ctx.upload(positionEmbeddingSineData(H, W, numPosFeats, opts), [H, W, numPosFeats]);
}
