import { describe, expect, it, it as vit } from 'vitest';
import { f16ToF32Array, f32ToF16Array } from '../src/gpu/half.js';
import { attention, attentionPacked, attentionPackedKV, ATTENTION } from '../src/kernels/attention.js';
import { gpu, maxAbs, maxAbsDiff, randn } from './helpers.js';

/**
 * float64 reference: softmax(q kᵀ · scale [+ logitBias.value on keys < logitBias.keys]) v per
 * (batch, head), heads packed in channels.
 * q: [B, Nq, H*d], k: [B, Nk, H*d], v: [B, Nk, H*dv] -> [B, Nq, H*dv]
 */
function attentionRef(q: Float32Array, k: Float32Array, v: Float32Array, b: number, nq: number, nk: number,
  heads: number, d: number, dv: number, scale = 1 / Math.sqrt(d), logitBias = { keys: 0, value: 0 }): Float64Array {
  const out = new Float64Array(b * nq * heads * dv);
  const s = new Float64Array(nk);
  for (let bi = 0; bi < b; bi++) for (let h = 0; h < heads; h++) for (let i = 0; i < nq; i++) {
    const qo = (bi * nq + i) * heads * d + h * d;
    let m = -Infinity;
    for (let j = 0; j < nk; j++) {
      const ko = (bi * nk + j) * heads * d + h * d;
      let dot = 0;
      for (let c = 0; c < d; c++) dot += q[qo + c]! * k[ko + c]!;
      s[j] = dot * scale + (j < logitBias.keys ? logitBias.value : 0);
      m = Math.max(m, s[j]!);
    }
    let sum = 0;
    for (let j = 0; j < nk; j++) { s[j] = Math.exp(s[j]! - m); sum += s[j]!; }
    const oo = (bi * nq + i) * heads * dv + h * dv;
    for (let j = 0; j < nk; j++) {
      const p = s[j]! / sum, vo = (bi * nk + j) * heads * dv + h * dv;
      for (let c = 0; c < dv; c++) out[oo + c] += p * v[vo + c]!;
    }
  }
  return out;
}

/** Splits a packed [B, N, (3, H, d)] qkv into q, k, v of [B, N, H*d] each. */
function unpackQkv(qkv: Float32Array, b: number, n: number, c: number): [Float32Array, Float32Array, Float32Array] {
  const parts = [new Float32Array(b * n * c), new Float32Array(b * n * c), new Float32Array(b * n * c)] as const;
  for (let t = 0; t < b * n; t++) for (let p = 0; p < 3; p++) {
    parts[p].set(qkv.subarray(t * 3 * c + p * c, t * 3 * c + (p + 1) * c), t * c);
  }
  return [parts[0], parts[1], parts[2]];
}

async function check(b: number, nq: number, nk: number, heads: number, d: number, dv: number, seed: number,
  opts: { scale?: number; qScale?: number; tol?: number; method?: 'composed' | 'fused'; logitBias?: { keys: number; value: number } } = {},
): Promise<number> {
  const ctx = await gpu();
  const q = randn(b * nq * heads * d, seed, opts.qScale ?? 1);
  const k = randn(b * nk * heads * d, seed + 1);
  const v = randn(b * nk * heads * dv, seed + 2);
  const qt = ctx.upload(q, [b, nq, heads * d]), kt = ctx.upload(k, [b, nk, heads * d]), vt = ctx.upload(v, [b, nk, heads * dv]);
  const o = attention(ctx, qt, kt, vt, heads,
    { method: opts.method, logitBias: opts.logitBias, ...(opts.scale === undefined ? {} : { scale: opts.scale }) });
  expect(o.shape).toEqual([b, nq, heads * dv]);
  const got = await o.read();
  const ref = attentionRef(q, k, v, b, nq, nk, heads, d, dv, opts.scale, opts.logitBias);
  const err = maxAbsDiff(got, ref);
  expect(err).toBeLessThan(opts.tol ?? 2e-5);
  for (const t of [qt, kt, vt, o]) t.release();
  return err;
}

// The first run of each new shape compiles its shader; on lavapipe the unrolled d=64 kernel takes 20-70 s.
describe.each(['composed', 'fused'] as const)('attention (%s)', (method) => {
  it('odd sizes: B=2, Nq=37, Nk=53, 3 heads of d=16', async () => {
    await check(2, 37, 53, 3, 16, 16, 10, { method });
  });
  it('d=64 with dv != d, Nk=1100', async () => {
    await check(1, 21, 1100, 2, 64, 32, 20, { method });
  });
  it('large logits (up to about ±70) do not overflow', async () => {
    await check(1, 40, 67, 2, 16, 16, 40, { method, scale: 5, tol: 1e-4 });
  });
});

// A constant on the logits of the first keys (EfficientRoPEAttention1's pooled memory keys).
describe.each(['composed', 'fused'] as const)('attention with a logit bias (%s)', (method) => {
  const LN4 = 2 * Math.LN2;
  it('on 0 keys: as without', async () => {
    await check(2, 37, 53, 3, 16, 16, 10, { method, logitBias: { keys: 0, value: LN4 } });
  });
  it('on some keys (21 of 53, not a multiple of the key group), odd sizes', async () => {
    await check(2, 37, 53, 3, 16, 16, 10, { method, logitBias: { keys: 21, value: LN4 } });
  });
  it('on all keys (a constant shift: as without)', async () => {
    await check(2, 37, 53, 3, 16, 16, 10, { method, logitBias: { keys: 53, value: LN4 } });
  });
  it('looped fused kernel (d + dv > 32), keys over several tiles, negative bias', async () => {
    await check(1, 29, 101, 2, 24, 20, 110, { method, logitBias: { keys: 66, value: -1.7 } });
  });
  it('scalar head dims (d=6), a large bias', async () => {
    await check(2, 11, 19, 2, 6, 6, 70, { method, logitBias: { keys: 7, value: 30 }, tol: 1e-4 });
  });
  it('the bias changes the result (the checks are not vacuous)', () => {
    const q = randn(9 * 8, 1), k = randn(13 * 8, 2), v = randn(13 * 8, 3);
    const plain = attentionRef(q, k, v, 1, 9, 13, 1, 8, 8);
    expect(maxAbsDiff(plain, attentionRef(q, k, v, 1, 9, 13, 1, 8, 8, undefined, { keys: 5, value: LN4 }))).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(plain, attentionRef(q, k, v, 1, 9, 13, 1, 8, 8, undefined, { keys: 13, value: LN4 }))).toBeLessThan(1e-12);
  });
  it('packed qkv with a bias gives the same result as separate q, k, v', async () => {
    const ctx = await gpu();
    const b = 1, n = 37, heads = 3, d = 16, c = heads * d, logitBias = { keys: 10, value: LN4 };
    const qkv = randn(b * n * 3 * c, 51);
    const [q, k, v] = unpackQkv(qkv, b, n, c);
    const packed = await attentionPacked(ctx, ctx.upload(qkv, [b, n, 3 * c]), heads, { method, logitBias }).read();
    expect(maxAbsDiff(packed, attentionRef(q, k, v, b, n, n, heads, d, d, undefined, logitBias))).toBeLessThan(2e-5);
  });
  it('rejects bad biases', async () => {
    const ctx = await gpu();
    const t = (...s: number[]) => ctx.empty(s);
    expect(() => attention(ctx, t(1, 5, 48), t(1, 7, 48), t(1, 7, 48), 3, { method, logitBias: { keys: 8, value: 1 } })).toThrow(/logitBias/);
    expect(() => attention(ctx, t(1, 5, 48), t(1, 7, 48), t(1, 7, 48), 3, { method, logitBias: { keys: 1.5, value: 1 } })).toThrow(/logitBias/);
    expect(() => attention(ctx, t(1, 5, 48), t(1, 7, 48), t(1, 7, 48), 3, { method, logitBias: { keys: 2, value: Infinity } })).toThrow(/logitBias/);
  });
});

describe('attention', { timeout: 600_000 }, () => {
  it('odd sizes: B=2, Nq=37, Nk=53, 3 heads of d=16', async () => {
    await check(2, 37, 53, 3, 16, 16, 10);
  });
  it('d=64, with dv != d', async () => {
    await check(1, 70, 45, 2, 64, 32, 20);
  });
  it('a long row of keys (Nk=1100)', async () => {
    await check(1, 9, 1100, 2, 16, 16, 30);
  });
  it('large logits (scale so they reach about ±60) do not overflow', async () => {
    const ctx = await gpu();
    // q, k ~ N(0, 1) with d = 16: q·k reaches about ±15; scale 5 puts the largest near ±70
    const b = 1, nq = 40, nk = 67, heads = 2, d = 16;
    const q = randn(b * nq * heads * d, 40), k = randn(b * nk * heads * d, 41), v = randn(b * nk * heads * d, 42);
    let maxLogit = 0;
    for (let i = 0; i < nq; i++) for (let j = 0; j < nk; j++) {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += q[i * heads * d + c]! * k[j * heads * d + c]!;
      maxLogit = Math.max(maxLogit, Math.abs(dot * 5));
    }
    expect(maxLogit).toBeGreaterThan(60);
    const o = await attention(ctx, ctx.upload(q, [b, nq, heads * d]), ctx.upload(k, [b, nk, heads * d]),
      ctx.upload(v, [b, nk, heads * d]), heads, { scale: 5 }).read();
    expect(o.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(o, attentionRef(q, k, v, b, nq, nk, heads, d, d, 5))).toBeLessThan(1e-4);
  });
  it('packed qkv gives the same result as separate q, k, v', async () => {
    const ctx = await gpu();
    const b = 2, n = 37, heads = 3, d = 16, c = heads * d;
    const qkv = randn(b * n * 3 * c, 50);
    const [q, k, v] = unpackQkv(qkv, b, n, c);
    const packed = await attentionPacked(ctx, ctx.upload(qkv, [b, n, 3 * c]), heads).read();
    const separate = await attention(ctx, ctx.upload(q, [b, n, c]), ctx.upload(k, [b, n, c]), ctx.upload(v, [b, n, c]), heads).read();
    expect(maxAbsDiff(packed, separate)).toBe(0);
    expect(maxAbsDiff(packed, attentionRef(q, k, v, b, n, n, heads, d, d))).toBeLessThan(2e-5);
  });
  it('packed with d=64 (ViT-S-like 6 heads), 1 window of 50 tokens', async () => {
    const ctx = await gpu();
    const b = 1, n = 50, heads = 6, d = 64, c = heads * d;
    const qkv = randn(b * n * 3 * c, 60);
    const [q, k, v] = unpackQkv(qkv, b, n, c);
    const got = await attentionPacked(ctx, ctx.upload(qkv, [b, n, 3 * c]), heads).read();
    expect(maxAbsDiff(got, attentionRef(q, k, v, b, n, n, heads, d, d))).toBeLessThan(2e-5);
  });
  it('head dims that are not multiples of 4 (scalar path), d=6', async () => {
    await check(2, 11, 19, 2, 6, 6, 70);
  });
  it('d=256 (small key tiles to fit 16 KiB)', async () => {
    await check(1, 5, 21, 1, 256, 256, 80);
  });
  it('tile configurations agree', async () => {
    const ctx = await gpu();
    const b = 1, n = 45, heads = 3, d = 16, c = heads * d;
    const qkv = ctx.upload(randn(b * n * 3 * c, 90), [b, n, 3 * c]);
    const a = await attentionPacked(ctx, qkv, heads, { config: { bq: 64, bk: 32, unroll: true } }).read();
    for (const config of [{ bq: 64, bk: 32, unroll: false }, { bq: 32, bk: 16, unroll: true }, { bq: 16, bk: 12, unroll: false }]) {
      const o = await attentionPacked(ctx, qkv, heads, { config }).read();
      expect(maxAbsDiff(o, a)).toBeLessThan(1e-5 * Math.max(1, maxAbs(a)));
    }
  });
  it('rejects bad shapes', async () => {
    const ctx = await gpu();
    const t = (...s: number[]) => ctx.empty(s);
    expect(() => attention(ctx, t(2, 5, 48), t(1, 7, 48), t(1, 7, 48), 3)).toThrow(/batch/);
    expect(() => attention(ctx, t(1, 5, 48), t(1, 7, 48), t(1, 6, 48), 3)).toThrow(/tokens/);
    expect(() => attention(ctx, t(1, 5, 48), t(1, 7, 32), t(1, 7, 48), 3)).toThrow(/channel/);
    expect(() => attention(ctx, t(1, 5, 48), t(1, 7, 48), t(1, 7, 48), 5)).toThrow(/heads/);
    expect(() => attention(ctx, t(5, 48), t(7, 48), t(7, 48), 3)).toThrow(/\[B, N, C\]/);
    expect(() => attentionPacked(ctx, t(1, 5, 48), 3)).toThrow(/3\*H\*d/);
    expect(() => attentionPacked(ctx, t(5, 144), 3)).toThrow(/3\*H\*d/);
    expect(() => attentionPacked(ctx, t(1, 5, 144), 3, { config: { bq: 64, bk: 6 } })).toThrow(/multiple/);
  });
});

describe('attentionPackedKV (Hiera Q-pooling: separate queries, k and v in place in a qkv)', () => {
  for (const kernel of ATTENTION.candidates) {
    for (const [b, nq, nk, heads, d] of [[6, 16, 64, 1, 16], [2, 9, 36, 2, 12], [3, 49, 196, 4, 8]] as const) {
      it(`${kernel}: B=${b} Nq=${nq} Nk=${nk} heads=${heads} d=${d}`, async () => {
        const ctx = await gpu();
        const c = heads * d;
        const q = randn(b * nq * c, 31);
        const qkv = randn(b * nk * 3 * c, 32);
        const [, k, v] = unpackQkv(qkv, b, nk, c);
        const o = attentionPackedKV(ctx, ctx.upload(q, [b, nq, c]), ctx.upload(qkv, [b, nk, 3 * c]), heads, { kernel });
        expect(o.shape).toEqual([b, nq, c]);
        expect(maxAbsDiff(await o.read(), attentionRef(q, k, v, b, nq, nk, heads, d, d))).toBeLessThan(2e-5);
      });
    }
  }
  it('rejects a qkv that does not go with q', async () => {
    const ctx = await gpu();
    expect(() => attentionPackedKV(ctx, ctx.empty([2, 4, 8]), ctx.empty([2, 16, 16]), 1)).toThrow(/does not go with q/);
  });
});

/**
 * Every candidate of the attention family against the float64 reference, at odd sizes: vec4 and
 * scalar head dims, a logit bias, keys over several blocks with dv != d, d = 256, a packed qkv,
 * and f16 operands (against the reference on the f16-rounded q, k, v). 'composed' and 'flash-row'
 * (= method 'fused') have those cases above already: here they get the f16 one.
 */
describe.each(ATTENTION.candidates)('attention candidate %s', (kernel) => {
  const it = kernel === 'flash-tile' ? vit : (name: string, fn: () => Promise<void>) => (/f16/.test(name) ? vit(name, fn) : vit.skip(name, fn));
  const round16 = (a: Float32Array): Float32Array => f16ToF32Array(f32ToF16Array(a));
  async function run(b: number, nq: number, nk: number, heads: number, d: number, dv: number, seed: number,
    o: { logitBias?: { keys: number; value: number }; half?: boolean; packed?: boolean } = {}): Promise<void> {
    const ctx = await gpu();
    const q = randn(b * nq * heads * d, seed), k = randn(b * nk * heads * d, seed + 1), v = randn(b * nk * heads * dv, seed + 2);
    ctx.kernels.f16.attention = !!o.half;
    try {
      let got: Float32Array;
      if (o.packed) {
        const c = heads * d, qkv = new Float32Array(b * nq * 3 * c);
        for (let t = 0; t < b * nq; t++) {
          qkv.set(q.subarray(t * c, (t + 1) * c), t * 3 * c);
          qkv.set(k.subarray(t * c, (t + 1) * c), t * 3 * c + c);
          qkv.set(v.subarray(t * c, (t + 1) * c), t * 3 * c + 2 * c);
        }
        got = await attentionPacked(ctx, ctx.upload(qkv, [b, nq, 3 * c]), heads, { kernel, logitBias: o.logitBias }).read();
      } else {
        got = await attention(ctx, ctx.upload(q, [b, nq, heads * d]), ctx.upload(k, [b, nk, heads * d]), ctx.upload(v, [b, nk, heads * dv]),
          heads, { kernel, logitBias: o.logitBias }).read();
      }
      const r = o.half ? (x: Float32Array) => round16(x) : (x: Float32Array) => x;
      const ref = attentionRef(r(q), r(k), r(v), b, nq, nk, heads, d, dv, undefined, o.logitBias);
      expect(maxAbsDiff(got, ref)).toBeLessThan(2e-5);
      if (o.half) expect(maxAbsDiff(got, attentionRef(q, k, v, b, nq, nk, heads, d, dv, undefined, o.logitBias))).toBeGreaterThan(1e-4);
    } finally {
      ctx.kernels.f16.attention = false;
    }
  }
  it('B=2, Nq=37, Nk=53, 3 heads of d=16, a logit bias on 21 keys; the same packed', async () => {
    await run(2, 37, 53, 3, 16, 16, 10, { logitBias: { keys: 21, value: 2 * Math.LN2 } });
    await run(2, 37, 37, 3, 16, 16, 11, { packed: true });
  });
  it('scalar head dims (d=6); d=64 with dv=32 and keys over several blocks (Nk=150)', async () => {
    await run(2, 11, 19, 2, 6, 6, 70);
    await run(1, 21, 150, 2, 64, 32, 20);
  });
  it('d=256 (one head, as memory attention)', async () => {
    await run(1, 9, 37, 1, 256, 256, 80);
  });
  it('f16 operands (f32 scores, softmax and sums)', async () => {
    await run(1, 21, 45, 2, 16, 16, 30, { half: true });
  });
});
