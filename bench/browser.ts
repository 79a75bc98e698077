/**
 * `npm run bench:browser [-- --no-ti512] [--reps N] [--browser-only]`: the kernel benchmark and the
 * per-module timings (bench/suite.ts) in Node (Dawn on lavapipe) and in headless Chromium
 * (SwiftShader WebGPU), one after the other in this process, printed as one table.
 *
 * Weights: ../shared/golden/tiny (and ti512 for the Ti 512x512 encoder), served to the page from
 * /shared by the test server (tests/browser/server.ts).
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { GpuContext } from '../src/gpu/context.js';
import { readSafetensorsFile } from '../src/io/safetensors.js';
import { launch, openPage, serve, SHARED } from '../tests/browser/server.js';
import { printTable, type Row } from './common.js';
import { runSuite, type ModelWeights, type SuiteRow } from './suite.js';

const args = process.argv.slice(2);
const withTi512 = !args.includes('--no-ti512');
const reps = Number(args[args.indexOf('--reps') + 1] ?? 3) || 3;
const browserOnly = args.includes('--browser-only');

async function weights(name: string): Promise<ModelWeights> {
  const dir = resolve(SHARED, 'golden', name);
  return {
    config: JSON.parse(await readFile(resolve(dir, 'config.json'), 'utf8')),
    weights: await readSafetensorsFile(resolve(dir, 'weights.safetensors')),
  };
}

async function node(): Promise<{ rows: SuiteRow[]; adapter: string }> {
  const ctx = await GpuContext.create();
  const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const rows = await runSuite(ctx, {
    tiny: await weights('tiny'), ti512: withTi512 ? await weights('ti512') : undefined, reps,
    log: (s) => console.error(`[node] ${s}`),
  });
  ctx.destroy();
  return { rows, adapter: info ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : 'unknown' };
}

async function browser(): Promise<{ rows: SuiteRow[]; adapter: string; version: string }> {
  const served = await serve();
  const b = await launch();
  try {
    const { page, errors } = await openPage(b, `${served.origin}/bench/browser.html`, (s) => console.error(`[browser] ${s}`));
    await page.waitForFunction(() => typeof window.etamBench === 'function');
    const r = await page.evaluate((o) => window.etamBench(o), { ti512: withTi512, reps });
    if (errors.length) throw new Error(`page errors:\n${errors.join('\n')}`);
    return { ...r, version: await b.version() };
  } finally {
    await b.close();
    await served.close();
  }
}

async function main(): Promise<void> {
  const n = browserOnly ? null : await node();
  const br = await browser();
  const byName = new Map<string, { node?: SuiteRow; browser?: SuiteRow }>();
  for (const r of n?.rows ?? []) byName.set(r.bench, { node: r });
  for (const r of br.rows) byName.set(r.bench, { ...byName.get(r.bench), browser: r });
  const rows: Row[] = [];
  for (const [bench, { node: a, browser: b }] of byName) {
    const row: Row = { benchmark: bench };
    if (n) row['Node ms'] = a?.ms ?? '';
    row['browser ms'] = b?.ms ?? '';
    if (n && a && b) row['browser/Node'] = b.ms / a.ms;
    if (a?.gflops !== undefined || b?.gflops !== undefined) {
      if (n) row['Node GFLOP/s'] = a?.gflops ?? '';
      row['browser GFLOP/s'] = b?.gflops ?? '';
    }
    if (a?.firstMs !== undefined || b?.firstMs !== undefined) {
      if (n) row['Node first run ms'] = a?.firstMs ?? '';
      row['browser first run ms'] = b?.firstMs ?? '';
    }
    if (a?.blockedMs !== undefined || b?.blockedMs !== undefined) {
      if (n) row['Node blocked ms'] = a?.blockedMs ?? '';
      row['browser blocked ms'] = b?.blockedMs ?? '';
    }
    if (a?.ratio !== undefined || b?.ratio !== undefined) {
      if (n) row['Node ratio'] = a?.ratio ?? '';
      row['browser ratio'] = b?.ratio ?? '';
    }
    if (a?.note || b?.note) row.note = [a?.note && n ? `Node: ${a.note}` : '', b?.note ? `browser: ${b.note}` : ''].filter(Boolean).join('; ');
    rows.push(row);
  }
  console.log(`\nNode: ${n ? `Dawn (npm webgpu), adapter ${n.adapter}` : 'skipped'}`);
  console.log(`browser: ${br.version}, headless, adapter ${br.adapter}`);
  console.log(`GPU ms: median of ${reps} runs, each timed from recording to the GPU being done (await ctx.sync());`);
  console.log('first run: the first call, pipeline compiles included. CPU rows: the same plain-JS loop in each JS engine.');
  console.log('blocked: the longest stretch a 5 ms timer could not run (event loop / main thread blocked). ratio: current kernels ms / tuned ms.\n');
  printTable(rows);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
