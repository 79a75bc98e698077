/**
 * The memory path: the RoPE kernel, the pooled-memory attention kernel, one RoPEAttention of each
 * kind against TypeScript references, and golden parity of the memory encoder and the memory
 * attention on the tiny cases (../shared/golden).
 *
 * The goldens' memory-attention call has a single memory frame, where the pooled variants attend
 * in full; the pooling itself is checked here against a reference that pools explicitly (its index
 * order was checked against the official reshape/avg_pool2d sequence in numpy).
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCase, runGolden } from '../src/golden/case.js';
import { formatTable } from '../src/golden/compare.js';
import { stages } from '../src/golden/registry.js';
import { memoryAttentionStage, memoryEncoderStage } from '../src/golden/stages_memory.js';
import { pooledAttention } from '../src/kernels/pooled_attention.js';
import { applyRope, RopeTable } from '../src/kernels/rope.js';
import { maskForMemory, scaledAdd, layerScaleResidual } from '../src/kernels/memory_ops.js';
import { Linear } from '../src/layers/linear.js';
import { RoPEAttention, type RoPEAttentionKind } from '../src/model/memory_attention.js';
import { gpu, maxAbs, maxAbsDiff, randn } from './helpers.js';

// ------------------------------------------------------------------------------------------------
// references (float64)

/** Rotates pairs of x [N, H*d] in place: tokens < count, position t % (side*side). */
function ropeRef(x: Float32Array, N: number, H: number, d: number, side: number, count: number, theta = 10000): Float64Array {
  const out = Float64Array.from(x);
  const C = H * d;
  for (let t = 0; t < count; t++) {
    const pos = t % (side * side);
    const px = pos % side, py = Math.floor(pos / side);
    for (let h = 0; h < H; h++) for (let j = 0; j < d / 2; j++) {
      const i = j < d / 4 ? j : j - d / 4;
      const freq = 1 / Math.pow(theta, (4 * i) / d);
      const a = (j < d / 4 ? px : py) * freq;
      const o = t * C + h * d + 2 * j;
      const re = x[o]!, im = x[o + 1]!;
      out[o] = re * Math.cos(a) - im * Math.sin(a);
      out[o + 1] = re * Math.sin(a) + im * Math.cos(a);
    }
  }
  void N;
  return out;
}

interface PoolRef { frames: number; side: number; keyBias: number; logitBias: number }

/**
 * softmax(q kᵀ scale [+ logitBias on pooled]) v with the first frames*side² keys/values pooled 2x2
 * per frame (explicit pooled copies). q [Nq, H*d], k [Nk, H*d], v [Nk, H*dv] -> [Nq, H*dv]
 */
function attentionRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, Nq: number, Nk: number,
  H: number, d: number, dv: number, pool: PoolRef | null): Float64Array {
  // explicit key/value lists per head
  const keys: number[][][] = [], vals: number[][][] = [], bias: number[][] = [];
  for (let h = 0; h < H; h++) {
    const K: number[][] = [], V: number[][] = [], Bs: number[] = [];
    const row = (src: ArrayLike<number>, t: number, w: number) => Array.from({ length: w }, (_, i) => src[t * H * w + h * w + i]!);
    let spatial = 0;
    if (pool) {
      const s = pool.side, P = s / 2;
      spatial = pool.frames * s * s;
      for (let f = 0; f < pool.frames; f++) for (let py = 0; py < P; py++) for (let px = 0; px < P; px++) {
        const ts = [0, 1].flatMap((a) => [0, 1].map((b) => f * s * s + (2 * py + a) * s + 2 * px + b));
        const mean = (src: ArrayLike<number>, w: number) => {
          const m = new Array<number>(w).fill(0);
          for (const t of ts) row(src, t, w).forEach((x, i) => (m[i]! += x / 4));
          return m;
        };
        K.push(mean(k, d).map((x) => x + pool.keyBias));
        V.push(mean(v, dv));
        Bs.push(pool.logitBias);
      }
    }
    for (let t = spatial; t < Nk; t++) {
      K.push(row(k, t, d));
      V.push(row(v, t, dv));
      Bs.push(0);
    }
    keys.push(K); vals.push(V); bias.push(Bs);
  }
  const out = new Float64Array(Nq * H * dv);
  const scale = 1 / Math.sqrt(d);
  for (let n = 0; n < Nq; n++) for (let h = 0; h < H; h++) {
    const qr = Array.from({ length: d }, (_, i) => q[n * H * d + h * d + i]!);
    const logits = keys[h]!.map((kr, j) => kr.reduce((s, x, i) => s + x * qr[i]!, 0) * scale + bias[h]![j]!);
    const m = Math.max(...logits);
    const p = logits.map((x) => Math.exp(x - m));
    const sum = p.reduce((a, b) => a + b, 0);
    for (let i = 0; i < dv; i++) {
      let acc = 0;
      p.forEach((pj, j) => (acc += pj * vals[h]![j]![i]!));
      out[n * H * dv + h * dv + i] = acc / sum;
    }
  }
  return out;
}

/** x [N, K] · W[O, K]ᵀ + b */
function linearRef(x: ArrayLike<number>, W: Float32Array, b: Float32Array, N: number, K: number, O: number): Float64Array {
  const out = new Float64Array(N * O);
  for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) {
    let s = b[o]!;
    for (let i = 0; i < K; i++) s += x[n * K + i]! * W[o * K + i]!;
    out[n * O + o] = s;
  }
  return out;
}

const LN4 = 2 * Math.log(2);

// ------------------------------------------------------------------------------------------------

describe('rope', () => {
  it('rotates q in place on one grid (2 heads)', async () => {
    const ctx = await gpu();
    const side = 6, H = 2, d = 12, N = side * side;
    const x = randn(N * H * d, 1);
    const t = ctx.upload(x, [1, N, H * d]);
    const rope = RopeTable.create(ctx, d, side, side);
    applyRope(ctx, t, rope, { numHeads: H });
    const got = await t.read();
    expect(maxAbsDiff(got, ropeRef(x, N, H, d, side, N))).toBeLessThan(2e-6);
    t.release();
    rope.release();
  });

  it('rotates k repeated over 3 frames, leaving 5 pointer tokens, out of place', async () => {
    const ctx = await gpu();
    const side = 4, H = 1, d = 16, count = 3 * side * side, N = count + 5;
    const x = randn(N * H * d, 2);
    const t = ctx.upload(x, [N, H * d]);
    const o = ctx.empty([N, H * d]);
    const rope = RopeTable.create(ctx, d, side, side);
    applyRope(ctx, t, rope, { numHeads: H, count, repeat: true, out: o });
    const got = await o.read();
    expect(maxAbsDiff(got, ropeRef(x, N, H, d, side, count))).toBeLessThan(2e-6);
    expect(Array.from(got.subarray(count * d))).toEqual(Array.from(x.subarray(count * d)));
    expect(maxAbsDiff(await t.read(), x)).toBe(0); // source untouched
    for (const z of [t, o]) z.release();
    rope.release();
  });

  it('rejects token counts that are not whole grids', async () => {
    const ctx = await gpu();
    const rope = RopeTable.create(ctx, 8, 4, 4);
    const t = ctx.empty([20, 8]);
    expect(() => applyRope(ctx, t, rope, { count: 20, repeat: true })).toThrow(/grid/);
    expect(() => applyRope(ctx, t, rope, { count: 17 })).toThrow(/grid/);
    t.release();
    rope.release();
  });
});

describe('pooledAttention', () => {
  // [name, heads, d, dv, Nq, frames, side, extra]
  const cases: [string, number, number, number, number, number, number, number][] = [
    ['2 heads, vec4, 3 frames + 5 extra', 2, 8, 12, 37, 3, 6, 5],
    ['1 head, scalar d=6, 2 frames + 0 extra', 1, 6, 6, 70, 2, 4, 0],
    ['1 head, d=64, 7 frames of 8x8 + 4 extra', 1, 64, 64, 64, 7, 8, 4],
  ];
  for (const [name, H, d, dv, Nq, frames, side, extra] of cases) {
    const Nk = frames * side * side + extra;
    for (const variant of ['plain', 'logitBias', 'keyBias'] as const) {
      it(`${name}: ${variant}`, async () => {
        const ctx = await gpu();
        const seed = Nq * 7 + d;
        const q = randn(Nq * H * d, seed), k = randn(Nk * H * d, seed + 1), v = randn(Nk * H * dv, seed + 2);
        const tq = ctx.upload(q, [1, Nq, H * d]), tk = ctx.upload(k, [1, Nk, H * d]), tv = ctx.upload(v, [1, Nk, H * dv]);
        const pool = variant === 'plain' ? undefined : {
          frames, height: side, width: side,
          keyBias: variant === 'keyBias' ? LN4 : 0, logitBias: variant === 'logitBias' ? LN4 : 0,
        };
        const out = pooledAttention(ctx, tq, tk, tv, H, { pool });
        const got = await out.read();
        const ref = attentionRef(q, k, v, Nq, Nk, H, d, dv,
          pool ? { frames, side, keyBias: pool.keyBias, logitBias: pool.logitBias } : null);
        expect(maxAbsDiff(got, ref)).toBeLessThan(2e-5 * Math.max(1, maxAbs(ref)));
        for (const t of [tq, tk, tv, out]) t.release();
      });
    }
  }

  it('pooling changes the result (the check above is not vacuous)', () => {
    const q = randn(16 * 8, 5), k = randn(36 * 8, 6), v = randn(36 * 8, 7);
    const full = attentionRef(q, k, v, 16, 36, 1, 8, 8, null);
    const p1 = attentionRef(q, k, v, 16, 36, 1, 8, 8, { frames: 2, side: 4, keyBias: 0, logitBias: LN4 });
    const p2 = attentionRef(q, k, v, 16, 36, 1, 8, 8, { frames: 2, side: 4, keyBias: LN4, logitBias: 0 });
    expect(maxAbsDiff(full, p1)).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(p1, p2)).toBeGreaterThan(1e-2);
  });
});

describe('memory ops', () => {
  it('scaledAdd, layerScaleResidual, maskForMemory', async () => {
    const ctx = await gpu();
    const n = 1000, C = 40;
    const a = randn(n, 11), b = randn(n, 12, 4), g = randn(C, 13);
    const ta = ctx.upload(a, [n]), tb = ctx.upload(b, [n]), tg = ctx.upload(g, [C]);
    const s = await scaledAdd(ctx, ta, tb, 0.1).read();
    expect(maxAbsDiff(s, a.map((x, i) => x + 0.1 * b[i]!))).toBeLessThan(1e-6);
    const r = await layerScaleResidual(ctx, tb.reshape([n / C, C]), tg, ta.reshape([n / C, C])).read();
    expect(maxAbsDiff(r, a.map((x, i) => x + g[i % C]! * b[i]!))).toBeLessThan(1e-5);
    const m1 = await maskForMemory(ctx, tb, { binarize: false, scale: 20, bias: -10 }).read();
    expect(maxAbsDiff(m1, b.map((x) => 20 / (1 + Math.exp(-x)) - 10))).toBeLessThan(1e-5);
    const m2 = await maskForMemory(ctx, tb, { binarize: true, scale: 20, bias: -10 }).read();
    expect(Array.from(m2)).toEqual(Array.from(b, (x) => (x > 0 ? 10 : -10)));
  });
});

describe('RoPEAttention (memory cross-attention) vs reference', () => {
  const kinds: RoPEAttentionKind[] = ['RoPEAttention', 'EfficientRoPEAttention1', 'EfficientRoPEAttention2'];
  for (const kind of kinds) {
    for (const frames of [1, 3]) {
      it(`${kind}, ${frames} frame(s) of 6x6 + 4 pointer tokens`, async () => {
        const ctx = await gpu();
        const side = 6, Nq = side * side, C = 32, kvIn = 8, ptr = 4, Nk = frames * Nq + ptr;
        const W = (o: number, i: number, seed: number) => randn(o * i, seed, 1 / Math.sqrt(i));
        const wq = W(C, C, 1), wk = W(C, kvIn, 2), wv = W(C, kvIn, 3), wo = W(C, C, 4);
        const bq = randn(C, 5, 0.1), bk = randn(C, 6, 0.1), bv = randn(C, 7, 0.1), bo = randn(C, 8, 0.1);
        const lin = (w: Float32Array, b: Float32Array, o: number, i: number) => new Linear(ctx, ctx.upload(w, [o, i]), ctx.upload(b, [o]));
        const attn = new RoPEAttention(ctx, kind, lin(wq, bq, C, C), lin(wk, bk, C, kvIn), lin(wv, bv, C, kvIn), lin(wo, bo, C, C), 1, 10000, true);
        const q = randn(Nq * C, 20), k = randn(Nk * kvIn, 21), v = randn(Nk * kvIn, 22), res = randn(Nq * C, 23);
        const tq = ctx.upload(q, [Nq, C]), tk = ctx.upload(k, [Nk, kvIn]), tv = ctx.upload(v, [Nk, kvIn]), tr = ctx.upload(res, [Nq, C]);
        const got = await attn.forward(tq, tk, tv, tr, ptr).read();

        const qp = ropeRef(new Float32Array(linearRef(q, wq, bq, Nq, C, C)), Nq, 1, C, side, Nq);
        const kp = ropeRef(new Float32Array(linearRef(k, wk, bk, Nk, kvIn, C)), Nk, 1, C, side, frames * Nq);
        const vp = linearRef(v, wv, bv, Nk, kvIn, C);
        const pooled = kind !== 'RoPEAttention' && frames > 1;
        const a = attentionRef(qp, kp, vp, Nq, Nk, 1, C, C, pooled
          ? { frames, side, keyBias: kind === 'EfficientRoPEAttention2' ? LN4 : 0, logitBias: kind === 'EfficientRoPEAttention1' ? LN4 : 0 }
          : null);
        const ref = linearRef(a, wo, bo, Nq, C, C).map((x, i) => x + res[i]!);
        expect(maxAbsDiff(got, ref)).toBeLessThan(1e-4 * Math.max(1, maxAbs(ref)));
      });
    }
  }
});

// ------------------------------------------------------------------------------------------------

const GOLDEN = resolve(__dirname, '../../shared/golden');
const EXPECTED = ['module.memory_encoder.out.vision_features', 'module.memory_encoder.out.vision_pos_enc', 'module.memory_attention.out'];

describe.each(['tiny', 'tiny_pool1', 'tiny_pool2'])('golden %s: memory encoder and memory attention', (name) => {
  it('matches module.memory_encoder.out.* and module.memory_attention.out', async () => {
    expect(stages).toContain(memoryEncoderStage);
    expect(stages).toContain(memoryAttentionStage);
    const ctx = await gpu();
    const report = await runGolden(ctx, await loadCase(resolve(GOLDEN, name)), [memoryEncoderStage, memoryAttentionStage]);
    console.log(`${name}\n${formatTable(report.rows)}`);
    expect(report.rows.map((r) => r.name).sort()).toEqual([...EXPECTED].sort());
    for (const row of report.rows) expect(row.pass, `${row.name}: ${JSON.stringify(row)}`).toBe(true);
  });
});
