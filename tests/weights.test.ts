import { describe, expect, it } from 'vitest';
import { f32ToF16Array } from '../src/gpu/half.js';
import { parseSafetensors, readSafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { WeightError, WeightLoader } from '../src/io/weights.js';
import { gpu, randn } from './helpers.js';

const file = () => parseSafetensors(writeSafetensors({
  'enc.blocks.0.attn.qkv.weight': { dtype: 'F32', shape: [6, 2], data: randn(12, 1) },
  'enc.blocks.0.attn.qkv.bias': { dtype: 'F32', shape: [6], data: randn(6, 2) },
  'enc.blocks.0.norm.weight': { dtype: 'F16', shape: [2], data: f32ToF16Array(new Float32Array([0.5, -2])) },
  'enc.blocks.0.proj.weight': { dtype: 'F32', shape: [3, 2], data: randn(6, 3) },
  'enc.extra.weight': { dtype: 'F32', shape: [1], data: new Float32Array([1]) },
  'dec.pe': { dtype: 'F32', shape: [4], data: new Float32Array(4) },
}), 'model.safetensors');

function catchError(f: () => unknown): WeightError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(WeightError);
    return e as WeightError;
  }
  throw new Error('expected a WeightError');
}

describe('WeightLoader', () => {
  it('uploads each weight once, as f32, and checks shapes', async () => {
    const ctx = await gpu();
    const f = file();
    const w = new WeightLoader(f, ctx, { allowUnused: true });
    const blk = w.scope('enc.blocks.0.');
    const before = ctx.stats.uploads;
    const qkv = blk.tensor('attn.qkv.weight', [6, 2]);
    expect(blk.tensor('attn.qkv.weight', [6, -1])).toBe(qkv); // same tensor, no second upload
    const norm = blk.tensor('norm.weight', [2]);
    expect(ctx.stats.uploads - before).toBe(2);
    expect(w.uploadedBytes).toBe(12 * 4 + 2 * 4);
    expect(qkv.shape).toEqual([6, 2]);
    expect([...(await qkv.read())]).toEqual([...f.getF32('enc.blocks.0.attn.qkv.weight')]);
    expect([...(await norm.read())]).toEqual([0.5, -2]);
    expect([...blk.cpu('attn.qkv.bias', [6])]).toEqual([...f.getF32('enc.blocks.0.attn.qkv.bias')]);
    expect(w.finish().unused).toEqual(['enc.blocks.0.proj.weight', 'enc.extra.weight', 'dec.pe']);
  });

  it('reports missing, mis-shaped and unused tensors in one error', async () => {
    const ctx = await gpu();
    const w = new WeightLoader(file(), ctx);
    const blk = w.scope('enc.blocks.0.');
    const a = blk.tensor('attn.qkv.weight', [6, 3]); // mis-shaped
    expect(a.shape).toEqual([6, 3]); // a placeholder of the expected shape: construction goes on
    blk.tensor('attn.qkv.bias', [6]);
    const m = blk.tensor('mlp.fc1.weight', [8, 2]); // missing
    expect(m.shape).toEqual([8, 2]);
    expect(blk.cpu('norm.weight', [1, 2]).length).toBe(2); // mis-shaped (rank)
    blk.tensor('mlp.fc2.weight', [2, 8]); // missing
    w.tensor('dec.pe', [4]);
    const err = catchError(() => w.finish());
    expect(err.missing).toEqual(['enc.blocks.0.mlp.fc1.weight', 'enc.blocks.0.mlp.fc2.weight']);
    expect(err.misShaped).toEqual([
      { name: 'enc.blocks.0.attn.qkv.weight', expected: [6, 3], found: [6, 2] },
      { name: 'enc.blocks.0.norm.weight', expected: [1, 2], found: [2] },
    ]);
    expect(err.unused).toEqual(['enc.blocks.0.proj.weight', 'enc.extra.weight']);
    const msg = err.message;
    expect(msg).toContain('model.safetensors');
    expect(msg).toMatch(/2 missing:\n {2}enc\.blocks\.0\.mlp\.fc1\.weight\n {2}enc\.blocks\.0\.mlp\.fc2\.weight/);
    expect(msg).toContain('enc.blocks.0.attn.qkv.weight: expected [6, 3], found [6, 2]');
    expect(msg).toContain('enc.blocks.0.norm.weight: expected [1, 2], found [2]');
    expect(msg).toMatch(/2 not used by the model:\n {2}enc\.blocks\.0\.proj\.weight\n {2}enc\.extra\.weight/);
  });

  it('allows listed unused tensors, by name or prefix, and warns when all are allowed', () => {
    const take = (w: WeightLoader) => {
      w.cpu('enc.blocks.0.attn.qkv.weight', [6, 2]);
      w.cpu('enc.blocks.0.attn.qkv.bias', [6]);
      w.cpu('enc.blocks.0.norm.weight', [2]);
    };
    let w = new WeightLoader(file(), null, { allowUnused: ['enc.blocks.0.proj.weight', 'enc.extra.', 'dec*'] });
    take(w);
    expect(w.finish().unused.length).toBe(3);
    w = new WeightLoader(file(), null, { allowUnused: ['enc.extra.'] });
    take(w);
    expect(catchError(() => w.finish()).unused).toEqual(['enc.blocks.0.proj.weight', 'dec.pe']);
    const warnings: string[] = [];
    w = new WeightLoader(file(), null, { allowUnused: true, warn: (m) => warnings.push(m) });
    take(w);
    w.skip('dec.pe');
    w.finish();
    expect(warnings[0]).toMatch(/2 tensors in model\.safetensors are not used by the model:\n {2}enc\.blocks\.0\.proj\.weight\n {2}enc\.extra\.weight/);
  });

  it('a prefix option limits names and the unused check to that part of the file', () => {
    const w = new WeightLoader(file(), null, { prefix: 'enc.blocks.0.' });
    w.cpu('attn.qkv.weight', [6, 2]);
    w.cpu('attn.qkv.bias', [6]);
    w.cpu('norm.weight', [2]);
    expect(w.optionalTensor('nope', [1])).toBeNull();
    expect(catchError(() => w.finish()).unused).toEqual(['enc.blocks.0.proj.weight']);
  });

  it('takes every weight of the tiny golden case (f32) with the shapes in the file', async () => {
    const f = await readSafetensorsFile('/work/shared/golden/tiny/weights.safetensors');
    const w = new WeightLoader(f, null);
    for (const n of f.names()) w.cpu(n, f.info(n).shape);
    expect(w.finish().unused).toEqual([]);
  });
});
