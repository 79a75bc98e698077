/**
 * Kernel tables: the tuner picks the fastest candidate; a table is stored per adapter and library
 * version and a later load reuses it without timing anything; a table of another adapter or version
 * is not used; export / import; the kernel wrappers follow the context's table.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { adapterKey } from '../src/gpu/adapter.js';
import { GpuContext } from '../src/gpu/context.js';
import { loadCase } from '../src/golden/case.js';
import type { KernelFamily } from '../src/kernels/choice.js';
import { linear, MATMUL } from '../src/kernels/matmul.js';
import { EfficientTAM } from '../src/model/efficienttam.js';
import { FileTableStore, MemoryTableStore } from '../src/tune/store.js';
import { contextKey, exportTable, importTable, type TuningTable } from '../src/tune/table.js';
import { tune } from '../src/tune/tuner.js';
import { LIBRARY_VERSION } from '../src/version.js';
import { gpu } from './helpers.js';

const TINY = resolve(__dirname, '../../shared/golden/tiny');
const dir = mkdtempSync(join(tmpdir(), 'etam-kernels-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('the library version is package.json\'s', () => {
  const pkg = JSON.parse(readFileSync(resolve(__dirname, '../package.json'), 'utf8')) as { version: string };
  expect(LIBRARY_VERSION).toBe(pkg.version);
});

describe('the tuner', () => {
  /** A family whose candidate 'slow' does 30 times the work of 'fast'. */
  const family = (fallback: string): KernelFamily<{ n: number }> => ({
    op: 'test-op',
    candidates: ['fast', 'slow'],
    eligible: () => ['fast', 'slow'],
    classOf: (c) => `n${c.n}`,
    fallback: () => fallback,
    flops: (c) => c.n,
    instance: (ctx, c) => {
      const x = ctx.upload(new Float32Array(c.n * c.n).fill(1), [c.n, c.n]), w = ctx.upload(new Float32Array(c.n * c.n).fill(1), [c.n, c.n]);
      const out = ctx.empty([c.n, c.n]);
      return {
        run: (cand) => { for (let i = 0; i < (cand === 'slow' ? 30 : 1); i++) linear(ctx, x, w, { out }); },
        release: () => { x.release(); w.release(); out.release(); },
      };
    },
  });

  it('picks the fastest candidate per class, keeps the default when it is the fastest, reports every timing', async () => {
    const ctx = await gpu();
    const calls = [{ op: 'test-op', call: { n: 64 } }, { op: 'test-op', call: { n: 64 } }];
    const progress: string[] = [];
    const t = await tune(ctx, calls, {
      families: [family('slow') as unknown as KernelFamily<never>], budgetMs: 60_000, rounds: 3,
      onProgress: (p) => progress.push(`${p.phase} ${p.class}`),
    });
    expect(t.entries).toHaveLength(1);
    const e = t.entries[0]!;
    expect(e).toMatchObject({ op: 'test-op', class: 'n64', calls: 2, chosen: 'fast', fallback: 'slow', why: 'fastest' });
    expect(e.ms.slow!).toBeGreaterThan(e.ms.fast!);
    expect(progress).toEqual(['compile n64', 'time n64', 'chosen n64']);
    expect(t).toMatchObject({ library: LIBRARY_VERSION, key: contextKey(ctx), complete: true });

    const t2 = await tune(ctx, calls, { families: [family('fast') as unknown as KernelFamily<never>], rounds: 3 });
    expect(t2.entries[0]).toMatchObject({ chosen: 'fast', why: 'fastest (the default)' });
  });

  it('past its budget, classes keep the default untimed', async () => {
    const ctx = await gpu();
    const calls = [{ op: 'test-op', call: { n: 64 } }, { op: 'test-op', call: { n: 32 } }];
    const t = await tune(ctx, calls, { families: [family('slow') as unknown as KernelFamily<never>], budgetMs: 0 });
    expect(t.complete).toBe(false);
    expect(t.entries.map((e) => [e.class, e.chosen, e.why, Object.keys(e.ms).length])).toEqual([
      ['n64', 'slow', 'default: not timed (budget)', 0], ['n32', 'slow', 'default: not timed (budget)', 0],
    ]);
  });
});

describe('kernel tables of a model (the tiny golden model)', () => {
  let first: TuningTable;

  it('tuning auto: times the candidates, stores the table under XDG_CACHE_HOME; a second load on the adapter reuses it without timing', async () => {
    const c = await loadCase(TINY);
    const old = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = dir;
    const folder = await FileTableStore.defaultFolder();
    // (assigning undefined would set the string 'undefined', and Mesa would cache into ./undefined)
    if (old === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = old;
    expect(folder).toBe(join(dir, 'efficienttam-webgpu', 'kernels'));
    const store = new FileTableStore(folder);

    // a tiny budget: the largest class is timed (its default at least), the rest keep defaults
    const ctx1 = await GpuContext.create();
    const m1 = await EfficientTAM.create(ctx1, c.weights, c.config, { store, budgetMs: 50, timeSoftware: true });
    const r1 = m1.kernelReport!;
    expect(r1).toMatchObject({ source: 'tuned', saved: true });
    expect(r1.timed).toBeGreaterThanOrEqual(1);
    expect(r1.compiled).toBeGreaterThan(10);
    first = r1.table!;
    expect(first.entries.length).toBeGreaterThan(10);
    expect(first.entries.map((e) => e.op)).toContain('matmul');
    expect(readdirSync(folder)).toHaveLength(1);
    ctx1.destroy();

    // a second load, on a new device of the same adapter
    const ctx2 = await GpuContext.create();
    const m2 = EfficientTAM.load(ctx2, c.weights, c.config);
    const dispatches = ctx2.stats.dispatches;
    await m2.prepare({ store, budgetMs: 60_000 });
    expect(m2.kernelReport).toMatchObject({ source: 'stored table', timed: 0, saved: false });
    expect(ctx2.stats.dispatches).toBe(dispatches); // nothing ran: no timing, only compiles
    expect(m2.kernelReport!.table).toEqual(first);
    expect(ctx2.kernels.size).toBe(first.entries.length);
    ctx2.destroy();
  });

  it('a table of another library version or another adapter is not used', async () => {
    const c = await loadCase(TINY);
    const ctx = await gpu();
    const m = EfficientTAM.load(ctx, c.weights, c.config);
    const otherVersion: TuningTable = { ...first, library: '0.0.1', key: adapterKey(first.adapter, '0.0.1') };
    const otherAdapter: TuningTable = { ...first, adapter: { ...first.adapter, device: 'another-gpu' } };
    otherAdapter.key = adapterKey(otherAdapter.adapter, LIBRARY_VERSION);

    const r1 = await m.prepare({ tuning: otherVersion, compile: false });
    expect(r1).toMatchObject({ source: 'defaults', timed: 0, table: null });
    expect(r1.note).toMatch(/not used: made by library version 0\.0\.1, this is /);
    const r2 = await m.prepare({ tuning: otherAdapter, compile: false });
    expect(r2.source).toBe('defaults');
    expect(r2.note).toMatch(/not used: made for another adapter \(.*another-gpu/);
    expect(ctx.kernels.size).toBe(0);

    // the same through a store: a file found under this adapter's key but made by another version
    // is not used (the tuner runs again)
    const store = new MemoryTableStore();
    store.tables.set(contextKey(ctx), { ...otherVersion, key: contextKey(ctx) });
    const r3 = await m.prepare({ store, budgetMs: 0, compile: false, timeSoftware: true });
    expect(r3.source).toBe('tuned');

    // and the table made for this adapter is used as given
    const r4 = await m.prepare({ tuning: importTable(exportTable(first)), compile: false });
    expect(r4).toMatchObject({ source: 'imported table', timed: 0, note: '' });
    expect(ctx.kernels.size).toBe(first.entries.length);
    const off = await m.prepare({ tuning: 'off', compile: false });
    expect(off.source).toBe('defaults');
    expect(ctx.kernels.size).toBe(0);
  });

  it('import checks the format; export / import round-trips', () => {
    expect(importTable(exportTable(first))).toEqual(first);
    expect(() => importTable('{"entries": []}')).toThrow(/not a kernel table/);
    expect(() => importTable('nope')).toThrow(/not JSON/);
  });
});

describe('the kernel wrappers follow the context\'s table', () => {
  it('a table entry for a class switches linear to that candidate; other classes keep the default', async () => {
    const ctx = await GpuContext.create(); // nothing compiled yet: the trace lists every pipeline
    const x = ctx.empty([37, 29]), w = ctx.empty([53, 29]), x2 = ctx.empty([300, 29]);
    const labels = (): string[] => ctx.trace(() => { linear(ctx, x, w).release(); linear(ctx, x2, w).release(); }).map((p) => p.label);
    ctx.kernels.clear();
    const cls = MATMUL.classOf({
      batch: 1, M: 37, N: 53, K: 29, transB: true, bBatched: false, bF16: false, aHalf: false, bHalf: false, bias: false, activation: 'none', residual: false,
    });
    ctx.kernels.set('matmul', cls, 'tiled32');
    expect(labels()).toEqual(['matmul_tiled_nt', 'matmul_nt']);
    ctx.kernels.clear();
    expect(labels()).toEqual(['matmul_nt']); // one pipeline: sizes are uniforms
    ctx.destroy();
  });
});
