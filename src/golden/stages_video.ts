/**
 * Golden stage of the video predictor: replays the case's `script` (the video operations the
 * reference ran, in order; see /work/shared/golden/README.md and tools/golden/make_golden.py) on
 * the reference's own preprocessed frames (`video.frames`), and outputs
 *   video.clickK.objN.masks_bits       the prompted object's mask right after each prompt ([H, W] logits)
 *   video.passP.frameF.masks_bits      every object's mask per tracked frame ([objects, H, W] logits)
 *   video.passP.frameF.objN.{pred_masks, object_score_logits, obj_ptr}   the stored state
 *   video.pass1.frame0.objN.maskmem_features                             [memDim, g, g]
 * K counts the propagations before the prompt (click0: before pass1, click1: after it).
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { VideoPredictor } from '../model/video_predictor.js';
import type { CaseData, GoldenStage } from './case.js';
import { caseModel, chwToHwc, hwcToChw } from './stages.js';

export type ScriptOp =
  | { op: 'points'; frame: number; obj: number; points: number[][]; labels: number[]; clear_old_points?: boolean; as_cond?: boolean }
  | { op: 'box'; frame: number; obj: number; box: number[] }
  | { op: 'propagate'; tag: string; reverse?: boolean; start?: number };

export function caseScript(c: CaseData): ScriptOp[] {
  const s = c.tensors.metadata.script;
  if (!s) throw new Error('the case has no video script metadata');
  return JSON.parse(s) as ScriptOp[];
}

export function videoHW(c: CaseData): [number, number] {
  const hw = JSON.parse(c.tensors.metadata.video_hw ?? 'null') as [number, number] | null;
  if (!hw || !(hw[0] > 0 && hw[1] > 0)) throw new Error('the case has no video_hw metadata');
  return hw;
}

/** The reference's preprocessed frames `video.frames` [N, 3, S, S] as our inputs [1, S, S, 3]. */
export function caseFrames(ctx: GpuContext, c: CaseData): Tensor[] {
  const info = c.tensors.info('video.frames');
  const [N, , S] = info.shape as [number, number, number, number];
  const all = c.tensors.getF32('video.frames');
  const plane = 3 * S * S;
  return Array.from({ length: N }, (_, i) => ctx.upload(chwToHwc(all.subarray(i * plane, (i + 1) * plane), 3, S, S), [1, S, S, 3]));
}

export interface ReplayHooks {
  /** called after each tracked frame with the time it took (ms: tracking every object, GPU work done) */
  onFrame?(tag: string, frame: number, ms: number): void;
}

/** Replays the script on a video predictor over the case's frames, yielding the outputs as they are made. */
export async function* replayScript(ctx: GpuContext, c: CaseData, hooks: ReplayHooks = {}): AsyncGenerator<[string, Float32Array]> {
  const model = caseModel(ctx, c);
  const frames = caseFrames(ctx, c);
  const [H, W] = videoHW(c);
  const vp = new VideoPredictor(model, { frames, videoHeight: H, videoWidth: W });
  const g = model.promptEncoder.embedSize;
  let passes = 0;
  try {
    for (const op of caseScript(c)) {
      if (op.op === 'points' || op.op === 'box') {
        let fm;
        if (op.op === 'points') {
          if (op.as_cond) vp.addAllFramesToCorrectAsCond = true;
          fm = await vp.addPoints(op.frame, op.obj, op.points, op.labels, { clearOldPoints: op.clear_old_points ?? true });
        } else {
          fm = await vp.addBox(op.frame, op.obj, op.box);
        }
        yield [`video.click${passes}.obj${op.obj}.masks_bits`, (await fm.masks({ logits: true, objId: op.obj })) as Float32Array];
        fm.release();
      } else if (op.op === 'propagate') {
        passes++;
        let t0 = performance.now();
        for await (const fm of vp.propagate({ reverse: op.reverse ?? false, start: op.start })) {
          await ctx.sync();
          hooks.onFrame?.(op.tag, fm.frameIndex, performance.now() - t0);
          const key = `video.${op.tag}.frame${fm.frameIndex}`;
          yield [`${key}.masks_bits`, (await fm.masks({ logits: true })) as Float32Array];
          fm.release();
          for (const id of vp.objIds) {
            const st = await vp.readFrameState(fm.frameIndex, id);
            if (!st) throw new Error(`no state for object ${id} on frame ${fm.frameIndex}`);
            yield [`${key}.obj${id}.pred_masks`, st.predMasks];
            yield [`${key}.obj${id}.object_score_logits`, Float32Array.of(st.objectScoreLogit)];
            yield [`${key}.obj${id}.obj_ptr`, st.objPtr];
            if (st.maskmemFeatures && fm.frameIndex === 0 && op.tag === 'pass1') {
              const D = st.maskmemFeatures.length / (g * g);
              yield [`${key}.obj${id}.maskmem_features`, hwcToChw(st.maskmemFeatures, g, g, D)];
            }
          }
          t0 = performance.now();
        }
      } else {
        throw new Error(`unknown script op ${(op as { op: string }).op}`);
      }
    }
  } finally {
    vp.dispose();
    for (const t of frames) t.release();
  }
}

export const videoStage: GoldenStage = {
  name: 'video',
  produces: (refs) => refs.filter((n) => /^video\.(click\d+|pass\d+)\./.test(n)),
  consumes: (refs) => refs.filter((n) => n === 'video.frames'),
  run: (ctx, c) => replayScript(ctx, c),
};
