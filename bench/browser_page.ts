/**
 * Page of bench/browser.ts: runs bench/suite.ts with the browser's WebGPU on weights fetched from
 * the server's /shared route.   await window.etamBench({ ti512: true, reps: 3 })
 */
import { GpuContext } from '../src/gpu/context.js';
import { fetchCase } from '../src/browser/golden.js';
import { runSuite, type SuiteRow } from './suite.js';

const logEl = document.getElementById('log')!;
const log = (s: string) => {
  logEl.textContent += `\n${s}`;
  console.log(s);
};

async function bench(o: { ti512: boolean; reps: number }): Promise<{ rows: SuiteRow[]; adapter: string }> {
  const ctx = await GpuContext.create();
  const tiny = await fetchCase('/shared/golden/tiny/');
  const ti512 = o.ti512 ? await fetchCase('/shared/golden/ti512/') : undefined;
  const rows = await runSuite(ctx, { tiny, ti512, reps: o.reps, log });
  const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  ctx.destroy();
  return { rows, adapter: info ? `${info.vendor} ${info.architecture}`.trim() : 'unknown' };
}

declare global {
  interface Window {
    etamBench(o: { ti512: boolean; reps: number }): Promise<{ rows: SuiteRow[]; adapter: string }>;
  }
}
window.etamBench = bench;
logEl.textContent = 'ready';
