/**
 * Golden stages of the memory modules, each run alone on the inputs the reference recorded for
 * its first call (see /work/shared/golden/README.md, `module.*`):
 * - `memory_encoder`: module.memory_encoder.in.{pix_feat, masks, skip_mask_sigmoid}
 *   -> out.vision_features, out.vision_pos_enc ([1, C, g, g] there, channels-last here);
 * - `memory_attention`: module.memory_attention.in.{curr, curr_pos, memory, memory_pos,
 *   num_obj_ptr_tokens} -> out. Sequence-first [N, 1, C] with batch 1 is the same memory as our [N, C].
 */
import type { CaseData, GoldenStage } from './case.js';
import { caseModel, chwToHwc, hwcToChw } from './stages.js';

const has = (refs: string[], names: string[]): string[] => names.filter((n) => refs.includes(n));

const ME = 'module.memory_encoder.';
const MA = 'module.memory_attention.';

const scalar = (c: CaseData, name: string): number => c.tensors.getF32(name)[0]!;

export const memoryEncoderStage: GoldenStage = {
  name: 'memory_encoder',
  produces: (refs) => has(refs, [`${ME}out.vision_features`, `${ME}out.vision_pos_enc`]),
  consumes: (refs) => has(refs, [`${ME}in.pix_feat`, `${ME}in.masks`, `${ME}in.skip_mask_sigmoid`]),
  async run(ctx, c) {
    const model = caseModel(ctx, c);
    const [, C, g] = c.tensors.info(`${ME}in.pix_feat`).shape as [number, number, number, number];
    const S = c.tensors.info(`${ME}in.masks`).shape[2]!;
    const pix = ctx.upload(chwToHwc(c.tensors.getF32(`${ME}in.pix_feat`), C, g, g), [1, g, g, C]);
    // [1, 1, S, S] has the same element order as [1, S, S, 1]
    const masks = ctx.upload(c.tensors.getF32(`${ME}in.masks`), [1, S, S, 1]);
    const skip = scalar(c, `${ME}in.skip_mask_sigmoid`) !== 0;
    const out = model.memoryEncoder.forward(pix, masks, skip);
    const M = out.visionFeatures.shape[3]!;
    const result = new Map([
      [`${ME}out.vision_features`, hwcToChw(await out.visionFeatures.read(), g, g, M)],
      [`${ME}out.vision_pos_enc`, hwcToChw(await out.visionPosEnc.read(), g, g, M)],
    ]);
    pix.release();
    masks.release();
    out.visionFeatures.release();
    return result;
  },
};

export const memoryAttentionStage: GoldenStage = {
  name: 'memory_attention',
  produces: (refs) => has(refs, [`${MA}out`]),
  consumes: (refs) => has(refs, ['curr', 'curr_pos', 'memory', 'memory_pos', 'num_obj_ptr_tokens'].map((n) => `${MA}in.${n}`)),
  async run(ctx, c) {
    const model = caseModel(ctx, c);
    const get = (n: string) => {
      const [N, B, D] = c.tensors.info(`${MA}in.${n}`).shape as [number, number, number];
      if (B !== 1) throw new Error(`${MA}in.${n}: batch ${B} (expected 1)`);
      return ctx.upload(c.tensors.getF32(`${MA}in.${n}`), [N, D]);
    };
    const curr = get('curr'), currPos = get('curr_pos'), memory = get('memory'), memoryPos = get('memory_pos');
    const out = model.memoryAttention.forward({
      curr, currPos, memory, memoryPos, numObjPtrTokens: scalar(c, `${MA}in.num_obj_ptr_tokens`),
    });
    const result = new Map([[`${MA}out`, await out.read()]]);
    for (const t of [curr, currPos, memory, memoryPos, out]) t.release();
    return result;
  },
};

export const memoryStages: GoldenStage[] = [memoryEncoderStage, memoryAttentionStage];
