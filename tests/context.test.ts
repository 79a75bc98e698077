/**
 * The GPU context: the device gets the adapter's limits (and no Dawn notices on stderr), the
 * buffer pool stays bounded on its own, GPU errors of a guarded call come back as a GpuError
 * with the work discarded and nothing leaked, and a readback of several parts.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GpuContext, GpuError } from '../src/gpu/context.js';
import { getGPU } from '../src/gpu/device.js';
import { unary } from '../src/kernels/mask_ops.js';
import { gpu } from './helpers.js';

const MiB = 2 ** 20;
const inUse = (ctx: GpuContext) => ctx.bytesHeld - ctx.bytesPooled;

describe('device', () => {
  it("has the adapter's limits, or those asked for", async () => {
    const ctx = await gpu();
    const adapter = (await (await getGPU()).requestAdapter())!;
    const a = adapter.limits as unknown as Record<string, number>, d = ctx.device.limits as unknown as Record<string, number>;
    for (const k of ['maxTextureDimension2D', 'maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize']) {
      expect(d[k], k).toBe(a[k]);
    }
    const small = await GpuContext.create({ limits: { maxBufferSize: 256 * MiB, maxTextureDimension2D: 8192 } });
    expect(small.device.limits.maxBufferSize).toBe(Math.min(256 * MiB, a.maxBufferSize!));
    expect(small.device.limits.maxTextureDimension2D).toBe(8192);
    small.destroy();
  });

  it("prints none of Dawn's clamping notices on a terminal or a pipe", () => {
    const script = "import('./src/gpu/context.ts').then(async (m) => { const c = await m.GpuContext.create(); console.error('created', c.device.limits.maxTextureDimension2D); process.exit(0); })";
    // stderr through `| cat`: a pipe, as in a shell (a Node parent's 'pipe' would be a socket)
    const r = spawnSync('bash', ['-c', `npx tsx -e "${script}" 2>&1 | cat`], { cwd: resolve(__dirname, '..'), encoding: 'utf8', env: process.env });
    expect(r.stdout).toMatch(/created \d+/);
    expect(r.stdout).not.toMatch(/artificially reduced/);
  });
});

describe('buffer pool', () => {
  it('shares buffers between nearby sizes (size classes) and never rounds past the binding limit', async () => {
    const ctx = await gpu();
    expect(ctx.sizeClass(100)).toBe(112);
    expect(ctx.sizeClass(12_000_000)).toBe(ctx.sizeClass(11_600_000));
    expect(ctx.sizeClass(12_000_000)).toBeGreaterThanOrEqual(12_000_000);
    expect(ctx.sizeClass(12_000_000)).toBeLessThanOrEqual(12_000_000 * 1.125);
    expect(ctx.sizeClass(ctx.maxBindingBytes - 64)).toBeLessThanOrEqual(ctx.maxBindingBytes);
    const a = ctx.empty([1_000_000]);
    const buf = a.buffer;
    a.release();
    const b = ctx.empty([1_010_000]); // 4 MB and 4.04 MB: one class
    expect(b.buffer).toBe(buf);
    b.release();
  });

  it('keeps at most poolLimit bytes of free buffers, the oldest freed going first', async () => {
    const ctx = await GpuContext.create();
    ctx.poolLimit = 8 * MiB;
    const held0 = ctx.bytesHeld;
    // 40 distinct sizes of ~1-3 MB, each used and freed (as 40 images of different sizes would)
    for (let k = 0; k < 40; k++) {
      const t = ctx.empty([256 * 1024 + k * 20_000]);
      t.release();
      expect(ctx.bytesPooled).toBeLessThanOrEqual(8 * MiB);
    }
    await ctx.sync();
    expect(ctx.bytesHeld - held0).toBeLessThanOrEqual(8 * MiB);
    expect(inUse(ctx)).toBe(held0);
    const created = ctx.stats.buffersCreated;
    const last = ctx.empty([256 * 1024 + 39 * 20_000]); // the newest freed is still there
    expect(ctx.stats.buffersCreated).toBe(created);
    const first = ctx.empty([256 * 1024]); // the oldest freed is gone
    expect(ctx.stats.buffersCreated).toBe(created + 1);
    last.release();
    first.release();
    ctx.trimPool();
    expect(ctx.bytesPooled).toBe(0);
    expect(ctx.bytesHeld).toBe(held0);
    ctx.destroy();
  });
});

describe('guard', () => {
  it('turns a refused call into a GpuError naming it, discards its work, frees what it made, and the next call works', async () => {
    const ctx = await gpu();
    const x = ctx.upload(Float32Array.from([0, 1, -1, 2]), [4]);
    unary(ctx, x, 'sigmoid').release(); // compiled before: a valid pipeline stays cached
    await ctx.sync();
    const before = inUse(ctx), held = ctx.bytesHeld, pipelines = ctx.stats.pipelinesCompiled;
    const gone = ctx.empty([4]);
    const goneBuffer = gone.buffer;
    gone.release();
    ctx.trimPool(); // goneBuffer destroyed: using it is a validation error at submit
    const err = await ctx.guard('test op (4 values)', () => {
      const y = unary(ctx, x, 'sigmoid');
      ctx.copy(y, goneBuffer, 16);
      return y;
    }, (y) => y.release()).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(GpuError);
    expect((err as GpuError).message).toMatch(/^test op \(4 values\): the GPU refused the work \(validation error\)/);
    expect((err as GpuError).kind).toBe('validation');
    expect(inUse(ctx)).toBe(before);
    expect(ctx.bytesHeld).toBeLessThanOrEqual(held);
    // the next call works (nothing left in the encoder, no error pending)
    const y = await ctx.guard('next', () => unary(ctx, x, 'sigmoid'));
    expect(Array.from(await y.read()).map((v) => +v.toFixed(4))).toEqual([0.5, 0.7311, 0.2689, 0.8808]);
    y.release();
    expect(ctx.stats.pipelinesCompiled).toBe(pipelines);
    x.release();
  });

  it('names the WGSL error of a pipeline the GPU refuses, and does not keep that pipeline', async () => {
    const ctx = await gpu();
    const x = ctx.upload(new Float32Array(4), [4]);
    const bad = '@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n@compute @workgroup_size(1) fn main() { x[0] = undefined_name; }';
    const compiled = ctx.stats.pipelinesCompiled;
    const run = () => ctx.guard('bad kernel', () => ctx.run({ pipeline: ctx.pipeline('bad', bad), bindings: [x], workgroups: [1] }));
    const e = await run().then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(GpuError);
    expect((e as GpuError).message).toMatch(/^bad kernel: the GPU refused the work \(validation error\): .*undefined_name/);
    await expect(run()).rejects.toThrow(GpuError); // compiled again, refused again
    expect(ctx.stats.pipelinesCompiled - compiled).toBe(2);
    const y = await ctx.guard('next', () => unary(ctx, x, 'sigmoid'));
    expect(Array.from(await y.read())).toEqual([0.5, 0.5, 0.5, 0.5]);
    x.release(); y.release();
  });

  it('rethrows a library error thrown while recording and drops the work recorded so far', async () => {
    const ctx = await gpu();
    const x = ctx.upload(new Float32Array(4).fill(3), [4]);
    const out = ctx.upload(new Float32Array(4).fill(7), [4]);
    await expect(ctx.guard('op', () => {
      unary(ctx, x, 'sigmoid', out); // recorded, then dropped
      throw new RangeError('bad input');
    })).rejects.toThrow(RangeError);
    expect(Array.from(await out.read())).toEqual([7, 7, 7, 7]);
    x.release(); out.release();
  });

  it('reports GPU work refused outside any guard as a GpuError at the next call, once', async () => {
    const ctx = await GpuContext.create();
    const t = ctx.empty([4]);
    const b = t.buffer;
    t.release();
    ctx.trimPool();
    ctx.copy(ctx.upload(new Float32Array(4), [4]), b, 16);
    ctx.flush();
    await ctx.device.queue.onSubmittedWorkDone();
    await new Promise((r) => setTimeout(r, 50));
    expect(() => ctx.empty([4])).toThrow(GpuError);
    expect(() => ctx.empty([4]).release()).not.toThrow();
    ctx.destroy();
  });
});

describe('readback', () => {
  it('returns several parts from one submit, across staging pieces', async () => {
    const ctx = await gpu();
    const a = ctx.upload(Float32Array.from({ length: 1000 }, (_, i) => i), [1000]);
    const b = ctx.upload(Float32Array.from([5, 6, 7]), [3]);
    const rb = ctx.readback(4000 + 12 + 8);
    const readbacks = ctx.stats.readbacks;
    rb.add(a, 4000);
    rb.next();
    rb.add(b, 12);
    rb.add(a, 8, 40); // a[10], a[11] appended to the second part
    const [p0, p1] = await rb.read();
    expect(ctx.stats.readbacks - readbacks).toBe(1);
    expect(Array.from(new Float32Array(p0!))).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(Array.from(new Float32Array(p1!))).toEqual([5, 6, 7, 10, 11]);
    a.release(); b.release();
  });
});
