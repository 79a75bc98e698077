/**
 * The golden stages: each runs part of the model on a case and outputs tensors named like the
 * reference's (see src/golden/case.ts for the interface). `npm run golden -- <case folder>` and the
 * golden tests run them all, in this order.
 *
 * Our maps are channels-last ([1, H, W, C]); the references are channels-first ([1, C, H, W]):
 * outputs are transposed on the CPU before comparison.
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { preprocessImage } from '../kernels/preprocess.js';
import { EfficientTAM } from '../model/efficienttam.js';
import type { CaseData, GoldenStage } from './case.js';

/** [H, W, C] (channels-last) -> [C, H, W]. */
export function hwcToChw(x: Float32Array, H: number, W: number, C: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let y = 0; y < H; y++) for (let xx = 0; xx < W; xx++) for (let c = 0; c < C; c++) {
    out[(c * H + y) * W + xx] = x[(y * W + xx) * C + c]!;
  }
  return out;
}

/** [C, H, W] -> [H, W, C]. */
export function chwToHwc(x: Float32Array, C: number, H: number, W: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) for (let xx = 0; xx < W; xx++) {
    out[(y * W + xx) * C + c] = x[(c * H + y) * W + xx]!;
  }
  return out;
}

/** Where a case's source images are: `../../data/{images,bedroom}` from the case folder, or $ETAM_DATA. */
export async function findDataFile(c: CaseData, file: string): Promise<string> {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const roots = [process.env.ETAM_DATA, path.resolve(c.dir, '../../data'), path.resolve(c.dir, '../data')].filter(Boolean) as string[];
  for (const root of roots) for (const sub of ['images', 'bedroom', '']) {
    const p = path.join(root, sub, file);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`cannot find the case's image '${file}' under ${roots.join(', ')} (set ETAM_DATA)`);
}

const models = new WeakMap<CaseData, EfficientTAM>();
/** The case's model, built once per case and shared by the stages. */
export function caseModel(ctx: GpuContext, c: CaseData): EfficientTAM {
  let m = models.get(c);
  if (!m) {
    m = EfficientTAM.load(ctx, c.weights, c.config, c.load);
    models.set(c, m);
  }
  return m;
}

const has = (refs: string[], names: string[]): string[] => names.filter((n) => refs.includes(n));

/** A SAM 2 case (made with the official sam2 package: its config names sam2 classes). */
export const isSam2Case = (c: CaseData): boolean => String(c.config?._target_ ?? '').startsWith('sam2.');

/** `image.input`: the image predictor's preprocessing, from the JPEG decoded in Node. */
export const preprocessStage: GoldenStage = {
  name: 'preprocess',
  produces: (refs) => has(refs, ['image.input']),
  async run(ctx, c) {
    const { decodeImageFile } = await import('../io/image.js');
    const img = await decodeImageFile(await findDataFile(c, c.tensors.metadata.image ?? ''));
    const S = c.config.image_size as number;
    const t = preprocessImage(ctx, img, S); // [1, S, S, 3]
    const x = await t.read();
    t.release();
    return new Map([['image.input', hwcToChw(x, S, S, 3)]]);
  },
};

/**
 * The image encoder on the reference's `image.input`: `image.trunk` (EfficientTAM's ViT) or
 * `image.trunk.0..3` (SAM 2's Hiera stages), `image.vision_features`, `image.vision_pos_enc`, and
 * for SAM 2 `image.backbone_fpn.0..1` (the FPN's stride-4 and -8 levels) and
 * `image.high_res_feats.0..1` (those through the decoder's conv_s0 / conv_s1).
 */
export const imageEncoderStage: GoldenStage = {
  name: 'image_encoder',
  produces: (refs) => refs.filter((n) => /^image\.(trunk(\.\d+)?|vision_features|vision_pos_enc|backbone_fpn\.\d+|high_res_feats\.\d+)$/.test(n)),
  consumes: (refs) => has(refs, ['image.input']),
  async run(ctx, c) {
    const model = caseModel(ctx, c);
    const S = model.imageSize;
    const input = ctx.upload(chwToHwc(c.tensors.getF32('image.input'), 3, S, S), [1, S, S, 3]);
    const out = model.imageEncoder.forward(input, { keepTrunk: true });
    input.release();
    const maps: [string, Tensor][] = [
      ['image.vision_features', out.visionFeatures],
      ['image.vision_pos_enc', out.visionPosEnc],
    ];
    if (out.trunk.length === 1) maps.push(['image.trunk', out.trunk[0]!]);
    else out.trunk.forEach((t, i) => maps.push([`image.trunk.${i}`, t]));
    out.backboneFpn.forEach((t, i) => maps.push([`image.backbone_fpn.${i}`, t]));
    const highRes = model.maskDecoder.usesHighRes ? model.maskDecoder.projectHighRes(out.backboneFpn) : [];
    highRes.forEach((t, i) => maps.push([`image.high_res_feats.${i}`, t]));
    const result = new Map<string, Float32Array>();
    for (const [name, t] of maps) {
      const [, h, w, ch] = t.shape as [number, number, number, number];
      result.set(name, hwcToChw(await t.read(), h, w, ch));
    }
    for (const [, t] of maps) if (t !== out.visionPosEnc) t.release();
    return result;
  },
};
