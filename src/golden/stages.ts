/**
 * The golden stages: each runs part of the model on a case and outputs tensors named like the
 * reference's (see src/golden/case.ts for the interface). `npm run golden -- <case folder>` and the
 * golden tests run them all, in this order.
 *
 * Our maps are channels-last ([1, H, W, C]); the references are channels-first ([1, C, H, W]):
 * outputs are transposed on the CPU before comparison.
 */
import type { GpuContext } from '../gpu/context.js';
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

/** `image.trunk`, `image.vision_features`, `image.vision_pos_enc`, from the reference's `image.input`. */
export const imageEncoderStage: GoldenStage = {
  name: 'image_encoder',
  produces: (refs) => has(refs, ['image.trunk', 'image.vision_features', 'image.vision_pos_enc']),
  consumes: (refs) => has(refs, ['image.input']),
  async run(ctx, c) {
    const model = caseModel(ctx, c);
    const S = model.imageSize;
    const input = ctx.upload(chwToHwc(c.tensors.getF32('image.input'), 3, S, S), [1, S, S, 3]);
    const out = model.imageEncoder.forward(input);
    const g = out.trunk.shape[1]!;
    const E = out.trunk.shape[3]!;
    const C = out.visionFeatures.shape[3]!;
    const result = new Map([
      ['image.trunk', hwcToChw(await out.trunk.read(), g, g, E)],
      ['image.vision_features', hwcToChw(await out.visionFeatures.read(), g, g, C)],
      ['image.vision_pos_enc', hwcToChw(await out.visionPosEnc.read(), g, g, C)],
    ]);
    input.release();
    out.trunk.release();
    out.visionFeatures.release();
    return result;
  },
};
