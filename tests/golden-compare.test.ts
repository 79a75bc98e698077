import { describe, expect, it } from 'vitest';
import { parseSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { f32ToF16Array } from '../src/gpu/half.js';
import {
  compare, compareMaskLogits, compareMasks, floatBound, formatTable, packBits, toleranceRule, unpackBits,
} from '../src/golden/compare.js';
import { bfloat16Elements, compareWithReference, formatGroups, formatReport, groupByPrefix, runGolden, type CaseData, type GoldenStage } from '../src/golden/case.js';
import type { GpuContext } from '../src/gpu/context.js';
import { randn } from './helpers.js';

describe('float comparison', () => {
  const ref = new Float32Array([10, -20, 5, 0]);
  it('passes within 1e-3*max|ref| + 1e-4 (f32 rule) and fails beyond', () => {
    const b = 1e-3 * 20 + 1e-4;
    expect(floatBound(20, 'f32')).toBeCloseTo(b, 12);
    const ok = compare('x', ref.map((v, i) => (i === 2 ? v + 0.02 : v)), ref, 'f32');
    expect(ok).toMatchObject({ name: 'x', maxAbsRef: 20, bound: b, pass: true });
    expect(ok.maxAbsErr).toBeCloseTo(0.02, 6);
    const bad = compare('x', ref.map((v, i) => (i === 3 ? 0.0202 : v)), ref, 'f32');
    expect(bad.pass).toBe(false);
  });
  it('f16 rule: 3e-3*max|ref|, no absolute term', () => {
    expect(floatBound(20, 'f16')).toBeCloseTo(0.06, 12);
    expect(compare('x', ref.map((v) => v + 0.059), ref, 'f16').pass).toBe(true);
    expect(compare('x', ref.map((v) => v + 0.061), ref, 'f16').pass).toBe(false);
    expect(compare('z', new Float32Array([1e-5]), new Float32Array([0]), 'f16').pass).toBe(false);
  });
  it('NaN, infinity and length mismatch fail', () => {
    expect(compare('x', new Float32Array([10, NaN, 5, 0]), ref, 'f32')).toMatchObject({ maxAbsErr: Infinity, pass: false });
    expect(compare('x', new Float32Array([10, -20, Infinity, 0]), ref, 'f32').pass).toBe(false);
    expect(compare('x', new Float32Array(3), ref, 1).note).toMatch(/length 3, reference 4/);
  });
  it('bfloat16 memories: 2^-7 * |ref| added to the bound of each element stored so, and only those', () => {
    // f16 rule: 3e-3 * 3 = 9e-3. Element 0 (|ref| 3, stored in bfloat16) may be one bfloat16 step
    // (2^-6 = 1.5625e-2 for values in [2, 4)) off: its bound is 9e-3 + 3 * 2^-7 = 3.24e-2.
    const r = new Float32Array([3, -3, 0.5, 0]);
    const step = (v: number) => r.map((x, i) => (i === 0 ? x + v : x));
    const plain = compare('m', step(2 ** -6), r, 'f16');
    expect(plain.pass).toBe(false);
    const bf = compare('m', step(2 ** -6), r, 'f16', { bfloat16Elements: 2 });
    expect(bf).toMatchObject({ pass: true, bfloat16Elements: 2 });
    expect(bf.bound).toBeCloseTo(9e-3 + 3 * 2 ** -7, 9);
    expect(bf.maxAbsErr).toBeCloseTo(2 ** -6, 9);
    // four steps is too far
    expect(compare('m', step(2 ** -4), r, 'f16', { bfloat16Elements: 2 }).pass).toBe(false);
    // an element outside the first bfloat16Elements keeps the plain bound
    const third = r.map((x, i) => (i === 2 ? x + 1e-2 : x));
    expect(compare('m', third, r, 'f16', { bfloat16Elements: 2 }).pass).toBe(false);
    expect(compare('m', third, r, 'f16', { bfloat16Elements: 3 }).pass).toBe(true); // 9e-3 + 0.5 * 2^-7 = 1.29e-2
    const far = r.map((x, i) => (i === 3 ? x + 1e-2 : x)); // |ref| 0 gets nothing extra
    expect(compare('m', far, r, 'f16', { bfloat16Elements: 4 }).pass).toBe(false);
    expect(formatTable([bf])).toMatch(/bf16 3\.24e-2 +pass/);
  });

  it('bfloat16 elements by reference name: maskmem_features whole, the spatial part of memory_attention.in.memory', () => {
    const mem = new Float32Array(6 * 2).fill(3); // 6 tokens of dim 2: 4 spatial, 2 pointer tokens
    const tensors = parseSafetensors(writeSafetensors({
      'video.pass1.frame0.obj1.maskmem_features': { dtype: 'F32', shape: [2, 2, 2], data: new Float32Array(8).fill(3) },
      'module.memory_attention.in.memory': { dtype: 'F32', shape: [6, 1, 2], data: mem },
      'module.memory_attention.in.num_obj_ptr_tokens': { dtype: 'F32', shape: [1], data: Float32Array.of(2) },
      'video.pass1.frame0.obj1.obj_ptr': { dtype: 'F32', shape: [2], data: Float32Array.of(3, 3) },
    }));
    const weights = parseSafetensors(writeSafetensors({ w: { dtype: 'F16', shape: [1], data: f32ToF16Array(new Float32Array([1])) } }));
    const c: CaseData = { dir: '/fake', config: {}, weights, tensors, rule: toleranceRule(weights) };
    expect(bfloat16Elements(c, 'video.pass1.frame0.obj1.maskmem_features')).toBe(8);
    expect(bfloat16Elements(c, 'module.memory_attention.in.memory')).toBe(8);
    expect(bfloat16Elements(c, 'video.pass1.frame0.obj1.obj_ptr')).toBe(0);
    const off = (n: number, at: number) => Float32Array.from({ length: n }, (_, i) => (i === at ? 3 + 2 ** -6 : 3));
    expect(compareWithReference(c, 'video.pass1.frame0.obj1.maskmem_features', off(8, 7)).pass).toBe(true);
    expect(compareWithReference(c, 'module.memory_attention.in.memory', off(12, 7)).pass).toBe(true); // a spatial token
    expect(compareWithReference(c, 'module.memory_attention.in.memory', off(12, 8)).pass).toBe(false); // a pointer token
    expect(compareWithReference(c, 'video.pass1.frame0.obj1.obj_ptr', off(2, 0)).pass).toBe(false);
  });

  it('the rule follows the weights dtype', () => {
    const f32 = parseSafetensors(writeSafetensors({ a: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }));
    const f16 = parseSafetensors(writeSafetensors({ a: { dtype: 'F16', shape: [1], data: new Uint16Array(1) } }));
    expect(toleranceRule(f32)).toBe('f32');
    expect(toleranceRule(f16)).toBe('f16');
  });
});

describe('mask comparison', () => {
  // 2 masks of 5 x 13 pixels (13 is not a multiple of 8: 2 bytes a row)
  const shape = [2, 5, 13];
  const n = 2 * 5 * 13;
  const logits = randn(n, 7, 3);
  logits[17] = 0.004; // a pixel near the decision boundary
  logits[40] = -5; // a pixel far from it
  const mask = logits.map((v) => (v > 0 ? 1 : 0));
  const bits = packBits(mask, shape);
  const packedShape = [2, 5, 2];

  it('unpacks numpy packbits order (first pixel in the high bit)', () => {
    expect([...unpackBits(new Uint8Array([0b10100000, 0b01000000]), [1, 10])]).toEqual([1, 0, 1, 0, 0, 0, 0, 0, 0, 1]);
    expect([...unpackBits(bits, shape)]).toEqual([...mask]);
    expect(() => unpackBits(bits, [2, 5, 17])).toThrow(/do not hold/);
  });
  it('equal masks pass', () => {
    expect(compareMaskLogits('m', logits, bits, packedShape)).toMatchObject({ differing: 0, total: n, pass: true });
  });
  it('one differing pixel at a near-zero logit passes, at a large logit fails', () => {
    const ours = logits.slice();
    ours[17] = -0.003; // flipped near zero
    const near = compareMaskLogits('m', ours, bits, packedShape, { minEqual: 0.99 });
    expect(near).toMatchObject({ differing: 1, pass: true });
    expect(near.maxAbsLogitAtDiff).toBeCloseTo(0.003, 6);
    ours[40] = 5; // flipped far from zero
    const far = compareMaskLogits('m', ours, bits, packedShape, { minEqual: 0.99 });
    expect(far).toMatchObject({ differing: 2, maxAbsLogitAtDiff: 5, pass: false });
  });
  it('fewer than 99.9% equal pixels fail even at near-zero logits', () => {
    const ours = logits.slice();
    ours[17] = -0.003; // 1 of 130 pixels: 99.2% equal
    expect(compareMaskLogits('m', ours, bits, packedShape).pass).toBe(false);
  });
  it('without logits only the fraction is checked; a wrong width fails', () => {
    const ours = mask.slice();
    ours[40] = 1 - ours[40]!;
    const r = compareMasks('m', ours, bits, packedShape, { minEqual: 0.99 });
    expect(r).toMatchObject({ differing: 1, pass: true });
    expect(r.note).toMatch(/no logits/);
    expect(compareMasks('m', new Uint8Array(2 * 5 * 17), bits, packedShape).pass).toBe(false);
  });
  it('prints an aligned table', () => {
    const rows = [
      compare('image.trunk', new Float32Array([1, 2]), new Float32Array([1, 2.0001]), 'f32'),
      compare('prompt.point.ious', new Float32Array([1]), new Float32Array([2]), 'f32'),
      compareMaskLogits('prompt.point.masks_bits', logits, bits, packedShape),
    ];
    const t = formatTable(rows);
    const lines = t.split('\n');
    expect(lines[0]).toMatch(/^tensor +max abs err +max \|ref\| +bound +result$/);
    expect(lines[2]).toMatch(/^image\.trunk +(1\.00e-4|9\.99e-5) +2\.00e\+0 +2\.\d\de-3 +pass$/);
    expect(lines[3]).toMatch(/FAIL$/);
    expect(lines[4]).toMatch(/0\/130 px/);
    expect(lines[5]).toBe('3 compared, 2 passed, 1 failed');
    // the numeric columns end at the same place
    const end = lines[2]!.indexOf('pass');
    expect(lines[3]!.indexOf('FAIL')).toBe(end);
  });
});

describe('runGolden', () => {
  const tensors = parseSafetensors(writeSafetensors({
    'image.trunk': { dtype: 'F32', shape: [1, 2, 2, 2], data: randn(8, 1) },
    'image.vision_features': { dtype: 'F32', shape: [4], data: randn(4, 2) },
    'prompt.point.point_coords': { dtype: 'F32', shape: [1, 2], data: new Float32Array([3, 4]) },
    'prompt.point.ious': { dtype: 'F32', shape: [3], data: randn(3, 3) },
    'prompt.point.masks_bits': { dtype: 'U8', shape: [1, 2, 1], data: new Uint8Array([0b11000000, 0b00100000]) },
    'prompt.box.ious': { dtype: 'F32', shape: [1], data: randn(1, 4) },
    'video.pass1.frame0.obj1.obj_ptr': { dtype: 'F32', shape: [2], data: randn(2, 5) },
    'video.pass1.frame1.obj1.obj_ptr': { dtype: 'F32', shape: [2], data: randn(2, 6) },
  }), 'tensors.safetensors');
  const weights = parseSafetensors(writeSafetensors({ w: { dtype: 'F16', shape: [1], data: f32ToF16Array(new Float32Array([1])) } }));
  const c: CaseData = { dir: '/fake', config: {}, weights, tensors, rule: toleranceRule(weights) };
  const ctx = null as unknown as GpuContext; // these stages do not use the GPU

  const echo = (name: string, prefixes: string[], tweak?: (n: string, v: Float32Array) => Float32Array): GoldenStage => ({
    name,
    produces: (refs) => refs.filter((r) => prefixes.some((p) => r.startsWith(p)) && !r.endsWith('point_coords')),
    consumes: (refs) => refs.filter((r) => r.endsWith('point_coords')),
    async *run(_ctx, cd) {
      for (const r of cd.tensors.names().filter((x) => prefixes.some((p) => x.startsWith(p)) && !x.endsWith('point_coords'))) {
        const v = r.endsWith('masks_bits')
          ? new Float32Array([1, 1, -1, -1, -1, -1, 0.5, -1]) // 2 rows of 4 px
          : cd.tensors.getF32(r).slice();
        yield [r, tweak ? tweak(r, v) : v];
      }
      yield ['image.not_in_refs', new Float32Array(1)];
    },
  });

  it('compares what stages output, lists what is not implemented, and survives a throwing stage', async () => {
    const stages: GoldenStage[] = [
      echo('encoder', ['image.']),
      echo('prompt', ['prompt.point.'], (n, v) => (n.endsWith('ious') ? v.map((x) => x + 1) : v)),
      {
        name: 'broken', produces: (refs) => refs.filter((r) => r === 'prompt.box.ious'),
        run: async () => { throw new Error('boom'); },
      },
      { name: 'absent', produces: () => ['video.nothing'], run: async () => { throw new Error('must not run'); } },
    ];
    const rep = await runGolden(ctx, c, stages);
    const by = Object.fromEntries(rep.rows.map((r) => [r.name, r]));
    expect(Object.keys(by)).toEqual(['image.trunk', 'image.vision_features', 'prompt.point.ious', 'prompt.point.masks_bits', 'prompt.box.ious']);
    expect(by['image.trunk']!.pass).toBe(true);
    expect(by['prompt.point.ious']!.pass).toBe(false);
    expect(by['prompt.point.masks_bits']).toMatchObject({ kind: 'mask', differing: 0, pass: true });
    expect(by['prompt.box.ious']).toMatchObject({ pass: false, stage: 'broken' });
    expect(by['prompt.box.ious']!.note).toMatch(/threw: boom/);
    expect(rep.pass).toBe(false);
    expect(rep.inputsOnly).toEqual(['prompt.point.point_coords']);
    expect(rep.notImplemented).toEqual(['video.pass1.frame0.obj1.obj_ptr', 'video.pass1.frame1.obj1.obj_ptr']);
    expect(rep.withoutReference.map((w) => w.name)).toEqual(['image.not_in_refs', 'image.not_in_refs']);
    const text = formatReport(c, rep);
    expect(text).toMatch(/not implemented yet \(2 of 8\): video\.\* \(2 tensors\)/);
    expect(text).toMatch(/used as inputs only: prompt\.point\.point_coords/);
  });

  it('groups names by prefix, splitting partly implemented groups', () => {
    const all = ['image.a', 'image.b', 'prompt.point.x', 'prompt.point.y', 'prompt.box.x', 'video.p1.a', 'video.p1.b', 'module.m'];
    expect(formatGroups(groupByPrefix(all, all))).toBe('image.* (2 tensors), prompt.* (3 tensors), video.* (2 tensors), module.* (1 tensor)');
    expect(formatGroups(groupByPrefix(['prompt.point.x', 'prompt.point.y', 'image.b'], all))).toBe('prompt.point.* (2 tensors), image.b');
  });
});
