/**
 * One image and one tracked frame of a model, as calls of its parts: what the kernel tuner times
 * and what is compiled ahead at load (tune/prepare.ts runs this under GpuContext.trace, a dry run
 * that computes nothing). Inputs are empty tensors of the real shapes; the memory bank is taken
 * with one frame and full (num_maskmem frames and their object pointers), the two ends of the
 * sizes memory attention sees.
 */
import type { EfficientTAM } from './efficienttam.js';

export function modelWorkload(m: EfficientTAM): void {
  const ctx = m.ctx, S = m.imageSize, cfg = m.config;
  const pe = m.promptEncoder;
  const C = pe.embedDim, g = pe.embedSize, memDim = cfg.memory_encoder.out_dim;
  const held = [];

  // image encoder
  const pixels = ctx.empty([1, S, S, 3]);
  const enc = m.forwardImage(pixels); // SAM 2: with the decoder's high-resolution maps
  held.push(pixels, ...(enc.highResFeatures ?? []));

  // prompt encoder + mask decoder: a click, 3 masks (image predictor) and 1 (tracking)
  for (const multimaskOutput of [true, false]) {
    const sparse = pe.embedPoints({ coords: Float32Array.of(S / 2, S / 2), labels: Int32Array.of(1), batch: 1, count: 1 }, true).data;
    const r = m.maskDecoder.forward({
      imageEmbed: enc.visionFeatures, imagePe: pe.densePe, sparse, batch: 1, dense: pe.noMaskEmbed, multimaskOutput,
      highResFeatures: enc.highResFeatures,
    });
    held.push(r.masks, r.iouPred, r.samTokensOut, r.objectScoreLogits);
  }

  // memory encoder
  const masks = ctx.empty([1, S, S, 1]);
  held.push(masks, m.memoryEncoder.forward(enc.visionFeatures, masks, false).visionFeatures);

  // memory attention over one memory frame and over a full bank
  const curr = ctx.empty([g * g, C]), currPos = ctx.empty([g * g, C]);
  held.push(curr, currPos, enc.visionFeatures);
  const maxPtrs = (cfg as { max_obj_ptrs_in_encoder?: number }).max_obj_ptrs_in_encoder ?? 16;
  for (const frames of [1, cfg.num_maskmem]) {
    const ptrTokens = cfg.use_obj_ptrs_in_encoder ? Math.min(frames, maxPtrs) * (C / memDim) : 0;
    const Nm = frames * g * g + ptrTokens;
    const memory = ctx.empty([Nm, memDim]), memoryPos = ctx.empty([Nm, memDim]);
    held.push(memory, memoryPos, m.memoryAttention.forward({ curr, currPos, memory, memoryPos, numObjPtrTokens: ptrTokens }));
  }
  for (const t of held) t.release();
}
