/**
 * `etam tune`: times the kernels of a model and stores the table under XDG_CACHE_HOME; a second
 * run shows the stored table without timing; --json; errors. (In this process, with a temporary
 * cache folder.)
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './helpers.js';

const TINY = resolve(__dirname, '../../shared/golden/tiny');
let cache: string;
let oldCache: string | undefined;
beforeAll(() => {
  cache = mkdtempSync(join(tmpdir(), 'etam-tune-'));
  oldCache = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = cache;
});
afterAll(() => {
  if (oldCache === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = oldCache;
  rmSync(cache, { recursive: true, force: true });
});

describe('etam tune', () => {
  it('times, stores (JSON: adapter, per operation the candidates\' ms and the choice); a second run reuses the table', async () => {
    const a = await cli('tune', '--weights', TINY, '--json', '--budget', '0.05');
    expect(a.code, a.stderr).toBe(0);
    expect(a.stderr).toMatch(/adapter: .*software/);
    expect(a.stderr).toMatch(/a software adapter .* budget is 0 s/);
    const j = JSON.parse(a.stdout) as { source: string; adapter: { vendor: string }; operations: Record<string, { class: string; medianMs: Record<string, number>; chosen: string }[]> };
    expect(j.source).toBe('tuned');
    expect(j.adapter.vendor).toBe('mesa');
    expect(Object.keys(j.operations)).toEqual(expect.arrayContaining(['matmul', 'conv2d', 'attention', 'softmax', 'layernorm']));
    const timed = Object.values(j.operations).flat().filter((e) => Object.keys(e.medianMs).length > 0);
    expect(timed.length).toBeGreaterThanOrEqual(1);
    expect(readdirSync(join(cache, 'efficienttam-webgpu', 'kernels'))).toHaveLength(1);

    const b = await cli('tune', '--weights', TINY, '--quiet');
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/^stored table from .*nothing timed/);
    expect(b.stdout).toMatch(/matmul: ms per call \(median\)\nclass +calls +direct +tiled32 +tiled64 +tiled128x64 +chosen +why/);
  });

  it('needs a model; rejects bad values', async () => {
    expect((await cli('tune')).code).toBe(2);
    expect((await cli('tune', '--variant', 'nope')).stderr).toMatch(/not one of/);
    expect((await cli('tune', '--weights', TINY, '--budget', '-1')).code).toBe(2);
    expect((await cli('tune', '--weights', TINY, '--precision', 'f8')).stderr).toMatch(/f32 or f16/);
  });
});
