/**
 * One image and one tracked frame of a model, as calls of its parts: what the kernel tuner times
 * and what is compiled ahead at load (tune/prepare.ts runs this under GpuContext.trace, a dry run
 * that computes nothing). Inputs are empty tensors of the real shapes; the memory bank is taken
 * with one frame and full (num_maskmem frames and their object pointers), the two ends of the
 * sizes memory attention sees. Then the predictors' own small kernels, so that a first image or a
 * first tracked frame compiles nothing: preprocessing, the features + no_mem_embed, masks at an
 * image's size, and objects tracked by the tracker itself (a click and then a tracked frame, a box:
 * best-mask pick, object-pointer gate, mask for the memory, memory finish, the memory's position
 * tables). Prompts batched in any number share the decoder's pipelines: its kernels that see the
 * batch take their sizes as uniforms.
 */
import { add } from '../kernels/elementwise.js';
import { unary } from '../kernels/mask_ops.js';
import { upsampleTensor } from '../kernels/mask_upsample.js';
import { preprocessImage } from '../kernels/preprocess.js';
import type { EfficientTAM } from './efficienttam.js';
import { emptyBank, Tracker } from './tracker.js';

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
  // a mask prompt (earlier logits) through the prompt encoder's downscaling
  const m4 = pe.maskInputSize;
  const maskPrompt = ctx.empty([1, m4, m4]);
  held.push(maskPrompt, pe.embedMasks(maskPrompt));

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

  // the image predictor's: an image's preprocessing (every size shares its pipelines), the
  // features + no_mem_embed, the low-res logits clamped, the masks as bytes, logits and an overlay
  // at an image's size
  held.push(preprocessImage(ctx, { data: new Uint8Array(2 * 2 * 3), width: 2, height: 2, channels: 3 }, S));
  if (cfg.directly_add_no_mem_embed) held.push(add(ctx, enc.visionFeatures, m.noMemEmbed));
  const lowRes = ctx.empty([1, 1, 4 * g, 4 * g]);
  held.push(lowRes, unary(ctx, lowRes, { clamp: [-32, 32] }));
  for (const mode of ['bytes', 'logits', 'overlay'] as const) held.push(upsampleTensor(ctx, lowRes, { H: 3, W: 5, mode, colors: [[255, 0, 0]] }));

  // objects through the tracker: a click on a first frame, then a tracked frame; a box
  const tracker = Tracker.of(m);
  try {
    const features = { visionFeats: enc.visionFeatures, visionPos: enc.visionPosEnc, highRes: enc.highResFeatures };
    const step = { features, mask: null, numFrames: 2, reverse: false, runMemEncoder: true };
    const bank = emptyBank();
    const first = tracker.trackStep({ ...step, frameIdx: 0, isInitCondFrame: true, bank,
      points: { coords: Float32Array.of(S / 2, S / 2), labels: Int32Array.of(1) } });
    bank.cond.set(0, first);
    const second = tracker.trackStep({ ...step, frameIdx: 1, isInitCondFrame: false, bank, points: null });
    // another object given by a box (one mask, not three)
    const boxed = tracker.trackStep({ ...step, frameIdx: 0, isInitCondFrame: true, bank: emptyBank(), runMemEncoder: false,
      points: { coords: Float32Array.of(0, 0, S / 2, S / 2), labels: Int32Array.of(2, 3) } });
    for (const o of [first, second, boxed]) held.push(o.predMasks, o.objPtr, o.objectScoreLogits, ...(o.maskmemFeatures ? [o.maskmemFeatures] : []));
  } finally {
    tracker.dispose();
  }
  for (const t of held) t.release();
}
