/**
 * Weights that are wrong (issue 11), on the tiny golden model: NaN, infinities and values beyond
 * the f32 range are found on the GPU as the weights are uploaded and named after one readback;
 * integer and bool tensors are refused; and a load that fails, for any of these reasons or an
 * unexpected tensor, gives back every byte it put on the GPU.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../src/gpu/context.js';
import { f32ToF16Array } from '../src/gpu/half.js';
import { parseSafetensors, type SafetensorsFile, type TensorToWrite, writeSafetensors } from '../src/io/safetensors.js';
import { WeightError, WeightValueError } from '../src/io/weights.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { gpu } from './helpers.js';

const TINY = '/work/shared/golden/tiny';
const config = JSON.parse(readFileSync(`${TINY}/config.json`, 'utf8')) as unknown;
const golden = parseSafetensors(new Uint8Array(readFileSync(`${TINY}/weights.safetensors`)), 'weights.safetensors');

/** The tiny weights with some tensors replaced (a copy of every tensor's data). */
function edited(edits: Record<string, (t: TensorToWrite) => TensorToWrite>, extra: Record<string, TensorToWrite> = {}): SafetensorsFile {
  const tensors = new Map<string, TensorToWrite>();
  for (const name of golden.names()) {
    const t: TensorToWrite = { dtype: 'F32', shape: golden.info(name).shape, data: golden.getF32(name).slice() };
    tensors.set(name, edits[name]?.(t) ?? t);
  }
  for (const [name, t] of Object.entries(extra)) tensors.set(name, t);
  return parseSafetensors(writeSafetensors(tensors), 'edited.safetensors');
}

/** Sets element `i` of an F32 tensor. */
const poke = (i: number, v: number) => (t: TensorToWrite): TensorToWrite => {
  (t.data as Float32Array)[i] = v;
  return t;
};

/** Bytes in use on the context: held minus free in the pool. */
const inUse = (ctx: GpuContext) => ctx.bytesHeld - ctx.bytesPooled;

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await gpu();
});

/** Runs a load that must fail, and checks that it gave back what it put on the GPU. */
async function failingCreate(file: SafetensorsFile): Promise<Error> {
  await ctx.sync();
  const used = inUse(ctx);
  const held = ctx.bytesHeld;
  const err = await EfficientTAM.create(ctx, file, config).then(() => new Error('expected the load to fail'), (e: Error) => e);
  expect(inUse(ctx)).toBe(used);
  // nothing stays held but the context's cache of small uniform buffers (kernel sizes)
  expect(ctx.bytesHeld - held).toBeLessThan(4096);
  return err;
}

describe('weight values are checked on the GPU as they are uploaded', () => {
  const QKV = 'image_encoder.trunk.blocks.0.attn.qkv.weight';

  it('a good file loads with one readback for the check, and a second check reads nothing', async () => {
    const readbacks = ctx.stats.readbacks;
    const model = await EfficientTAM.create(ctx, golden, config);
    expect(ctx.stats.readbacks - readbacks).toBe(1);
    await model.checkWeights();
    expect(ctx.stats.readbacks - readbacks).toBe(1);
    // release gives back everything the load kept
    const held = inUse(ctx);
    model.release();
    await ctx.sync();
    expect(held - inUse(ctx)).toBeGreaterThanOrEqual(golden.names().reduce((a, n) => a + golden.info(n).dataOffsets[1] - golden.info(n).dataOffsets[0], 0) * 0.9);
  });

  it('a NaN in one weight: WeightValueError naming it, after one readback, with nothing left on the GPU', async () => {
    const readbacks = ctx.stats.readbacks;
    const err = await failingCreate(edited({ [QKV]: poke(17, NaN) }));
    expect(err).toBeInstanceOf(WeightValueError);
    expect(err.message).toBe(`weights from edited.safetensors: tensor "${QKV}" holds NaN or infinite values: the file is damaged, or holds values beyond the float32 range`);
    expect((err as WeightValueError).tensors).toEqual([QKV]);
    expect(ctx.stats.readbacks - readbacks).toBe(1);
  });

  it('infinities, a value beyond f32 in an F64 tensor, and a NaN in a weight read on the CPU are all named, in load order', async () => {
    const last = golden.names().filter((n) => n.startsWith('memory_attention.')).at(-1)!;
    const f64 = (t: TensorToWrite): TensorToWrite => {
      const d = Float64Array.from(t.data as Float32Array);
      d[0] = 1e39; // finite in F64, infinite once widened to f32
      return { dtype: 'F64', shape: t.shape, data: d };
    };
    const err = await failingCreate(edited({
      [last]: poke(0, -Infinity),
      'sam_mask_decoder.iou_token.weight': poke(3, NaN), // taken with w.cpu
      'no_mem_embed': f64,
      [QKV]: poke(0, Infinity),
    }));
    expect(err).toBeInstanceOf(WeightValueError);
    const names = (err as WeightValueError).tensors;
    expect([...names].sort()).toEqual([QKV, last, 'no_mem_embed', 'sam_mask_decoder.iou_token.weight'].sort());
    expect(names[0]).toBe(QKV); // the image encoder loads first
    expect(err.message).toMatch(new RegExp(`tensor "${QKV.replace(/\./g, '\\.')}" holds NaN or infinite values \\(and 3 more: `));
  });

  it('an infinity in an F16 weight (kept f16 on the GPU when the device has shader-f16)', async () => {
    const tensors = new Map<string, TensorToWrite>();
    for (const name of golden.names()) {
      tensors.set(name, { dtype: 'F16', shape: golden.info(name).shape, data: f32ToF16Array(golden.getF32(name)) });
    }
    const name = 'sam_mask_decoder.transformer.layers.0.self_attn.q_proj.weight';
    const d = tensors.get(name)!.data as Uint16Array;
    d[d.length - 1] = 0x7c00; // +inf in the last half of the last word
    const err = await failingCreate(parseSafetensors(writeSafetensors(tensors), 'f16.safetensors'));
    expect(err).toBeInstanceOf(WeightValueError);
    expect((err as WeightValueError).tensors).toEqual([name]);
  });

  it('integer and bool tensors where floats are expected are refused, with nothing left on the GPU', async () => {
    const ints = (t: TensorToWrite): TensorToWrite => ({ dtype: 'I32', shape: t.shape, data: Int32Array.from(t.data as Float32Array, Math.round) });
    const bools = (t: TensorToWrite): TensorToWrite => ({ dtype: 'BOOL', shape: t.shape, data: Uint8Array.from(t.data as Float32Array, (x) => (x > 0 ? 1 : 0)) });
    const err = await failingCreate(edited({ [QKV]: ints, 'no_mem_embed': bools }));
    expect(err).toBeInstanceOf(WeightError);
    expect((err as WeightError).wrongDType).toEqual([{ name: QKV, dtype: 'I32' }, { name: 'no_mem_embed', dtype: 'BOOL' }]);
    expect(err.message).toMatch(/2 stored as integers or bools, where the model needs floating-point values \(F32, F16, BF16 or F64\):\n {2}image_encoder\.trunk\.blocks\.0\.attn\.qkv\.weight: I32\n {2}no_mem_embed: BOOL/);
  });

  it('an unexpected tensor fails the load after every weight is uploaded, and the uploads are given back', async () => {
    const file = edited({}, { 'unexpected.weight': { dtype: 'F32', shape: [1000, 250], data: new Float32Array(250_000) } });
    const err = await failingCreate(file);
    expect(err).toBeInstanceOf(WeightError);
    expect((err as WeightError).unused).toEqual(['unexpected.weight']);
    // the same through the synchronous load
    const used = inUse(ctx);
    expect(() => EfficientTAM.load(ctx, file, config)).toThrow(WeightError);
    expect(inUse(ctx)).toBe(used);
    // and the context works afterwards: a good load, checked
    const model = await EfficientTAM.create(ctx, golden, config);
    model.release();
  });
});
