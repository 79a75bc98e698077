/**
 * Golden stages of the image predictor: `image.predictor_embed` and the `prompt.NAME.*` outputs
 * (see /work/shared/golden/README.md and tools/golden/make_golden.py for how they were made).
 *
 * The prompt stage decodes from the reference's `image.predictor_embed`, so that it checks the
 * prompt encoder, the mask decoder and the postprocessing alone. Prompts are read from the case
 * (original-image pixels); `refine` feeds back the reference's best low-res logits of `point`, as
 * the reference did.
 */
import { ImagePredictor } from '../model/image_predictor.js';
import type { CaseData, GoldenStage } from './case.js';
import type { Tensor } from '../gpu/tensor.js';
import { caseModel, chwToHwc, hwcToChw, isSam2Case } from './stages.js';

const PROMPTS: { name: string; multimask: boolean }[] = [
  { name: 'point', multimask: true },
  { name: 'points', multimask: false },
  { name: 'box', multimask: false },
  { name: 'box_point', multimask: true },
  { name: 'refine', multimask: false },
];

const imageHW = (c: CaseData): [number, number] => {
  const hw = JSON.parse(c.tensors.metadata.image_hw ?? 'null') as [number, number] | null;
  if (!hw || !(hw[0] > 0 && hw[1] > 0)) throw new Error('the case has no image_hw metadata');
  return hw;
};

/** The case's source image (as stages.ts finds it: ../../data/{images,bedroom} from the case, or $ETAM_DATA). */
async function caseImage(c: CaseData) {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { decodeImageFile } = await import('../io/image.js');
  const file = c.tensors.metadata.image ?? '';
  const roots = [process.env.ETAM_DATA, path.resolve(c.dir, '../../data'), path.resolve(c.dir, '../data')].filter(Boolean) as string[];
  for (const root of roots) for (const sub of ['images', 'bedroom', '']) {
    const p = path.join(root, sub, file);
    if (fs.existsSync(p)) return decodeImageFile(p);
  }
  throw new Error(`cannot find the case's image '${file}' under ${roots.join(', ')} (set ETAM_DATA)`);
}

const has = (refs: string[], names: string[]): string[] => names.filter((n) => refs.includes(n));

export const predictorEmbedStage: GoldenStage = {
  name: 'predictor_embed',
  produces: (refs) => has(refs, ['image.predictor_embed']),
  async run(ctx, c) {
    const model = caseModel(ctx, c);
    // The EfficientTAM goldens' torchvision predates 0.17: its tensor Resize, which the official
    // predictor uses, did not antialias (while `image.input` was made with antialias=True
    // explicitly). The SAM 2 goldens gave the predictor the antialiased resize (golden/SAM2.md).
    const pred = new ImagePredictor(model, { antialias: isSam2Case(c) });
    pred.setImage(await caseImage(c));
    const e = pred.imageEmbedding; // [1, g, g, C]
    const [, g, , C] = e.shape as [number, number, number, number];
    const out = hwcToChw(await e.read(), g, g, C);
    pred.reset();
    return new Map([['image.predictor_embed', out]]);
  },
};

/** Rows of a [N, 2] / [N] / [4] reference tensor as JS arrays. */
const rows = (x: Float32Array, width: number): number[][] =>
  Array.from({ length: x.length / width }, (_, i) => Array.from(x.subarray(i * width, (i + 1) * width)));

export const promptStage: GoldenStage = {
  name: 'prompts',
  produces: (refs) => refs.filter((n) => /^prompt\.[a-z_]+\.(masks_bits|ious|low_res_logits)$/.test(n)),
  consumes: (refs) => refs.filter((n) => /^prompt\.[a-z_]+\.(point_coords|point_labels|box)$/.test(n))
    .concat(has(refs, ['image.predictor_embed', 'image.high_res_feats.0', 'image.high_res_feats.1'])),
  async *run(ctx, c) {
    // The decoder is checked on the reference's own embedding (see predictorEmbedStage).
    const model = caseModel(ctx, c);
    const pred = new ImagePredictor(model);
    const [H, W] = imageHW(c);
    const ref = c.tensors.getF32('image.predictor_embed');
    const C = model.promptEncoder.embedDim, g = model.promptEncoder.embedSize;
    // SAM 2: the reference's high-resolution maps too (`image.high_res_feats.0/1`, channels-first)
    const highRes = model.maskDecoder.usesHighRes
      ? ([0, 1] as const).map((i) => {
        const [, ch, h, w] = c.tensors.info(`image.high_res_feats.${i}`).shape as [number, number, number, number];
        return ctx.upload(chwToHwc(c.tensors.getF32(`image.high_res_feats.${i}`), ch, h, w), [1, h, w, ch]);
      }) as unknown as readonly [Tensor, Tensor]
      : null;
    pred.setEmbedding(ctx.upload(chwToHwc(ref, C, g, g), [1, g, g, C]), W, H, highRes);
    const refs = c.tensors.names();
    for (const { name, multimask } of PROMPTS) {
      const key = (k: string) => `prompt.${name}.${k}`;
      if (!refs.includes(key('ious'))) continue;
      const get = (k: string) => (refs.includes(key(k)) ? c.tensors.getF32(key(k)) : undefined);
      const coords = get('point_coords'), labels = get('point_labels'), box = get('box');
      let maskInput: Float32Array | undefined;
      if (name === 'refine') {
        const ious = c.tensors.getF32('prompt.point.ious');
        const low = c.tensors.getF32('prompt.point.low_res_logits');
        const best = ious.indexOf(Math.max(...ious));
        const plane = low.length / ious.length;
        maskInput = low.slice(best * plane, (best + 1) * plane);
      }
      const r = await pred.predict({
        points: coords ? rows(coords, 2) : undefined,
        labels: labels ? Array.from(labels) : undefined,
        box: box ? Array.from(box) : undefined,
        maskInput,
        multimask,
        returnLogits: true,
      });
      yield [key('masks_bits'), r.masks as Float32Array] as [string, Float32Array];
      yield [key('ious'), r.ious] as [string, Float32Array];
      yield [key('low_res_logits'), r.lowResLogits!] as [string, Float32Array];
    }
  },
};

export const promptStages: GoldenStage[] = [predictorEmbedStage, promptStage];
