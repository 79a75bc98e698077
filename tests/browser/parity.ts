/**
 * Page fixture for tests/browser.test.ts: runs golden stages on a case fetched from the server
 * (`/shared/golden/<case>/`) with the browser's WebGPU, and returns every comparison row to the
 * test, which asserts them with the same bounds as the Node tests.
 *
 *   await window.etamParity({ case: 'tiny', what: 'prompts' | 'video' })
 */
import { fetchCase } from '../../src/browser/golden.js';
import { GpuContext } from '../../src/gpu/context.js';
import { compareWithReference, runGolden, type CaseData } from '../../src/golden/case.js';
import { formatTable, type GoldenRow } from '../../src/golden/compare.js';
import { imageEncoderStage } from '../../src/golden/stages.js';
import { promptStage } from '../../src/golden/stages_prompt.js';
import { replayScript } from '../../src/golden/stages_video.js';
import { caseModel } from '../../src/golden/stages.js';
import { EfficientTAM } from '../../src/model/efficienttam.js';
import type { PrepareReport } from '../../src/tune/prepare.js';

export interface ParityRequest {
  case: string;
  what: 'prompts' | 'video';
  /**
   * The tuned path: before the first run, the case's model gets its kernel table (tuning 'auto',
   * stored in IndexedDB) within this budget, and its pipelines compiled ahead; later runs on the
   * page use that table.
   */
  tuneBudgetMs?: number;
}

/** What the kernel preparation did (PrepareReport without the table itself). */
export interface KernelSummary extends Omit<PrepareReport, 'table'> {
  classes: number;
  /** classes whose kernel differs from the adapter's default */
  changed: string[];
  adapter: string;
}

const summary = ({ table, ...r }: PrepareReport, adapter: string): KernelSummary => ({
  ...r,
  classes: table?.entries.length ?? 0, changed: (table?.entries ?? []).filter((e) => e.chosen !== e.fallback).map((e) => `${e.op} ${e.class}: ${e.chosen}`),
  adapter,
});

export interface ParityResult {
  rows: GoldenRow[];
  /** reference names the run was expected to output */
  expected: string[];
  /** object present/absent disagreements (video) */
  presence: string[];
  /** the table as text */
  table: string;
  seconds: number;
  /** per tracked frame, ms (video) */
  frameMs: number[];
  adapter: string;
  /** the kernel preparation, when this request did it (tuneBudgetMs) */
  kernels?: KernelSummary;
}

const logEl = document.getElementById('log')!;
const log = (s: string) => {
  logEl.textContent += `\n${s}`;
  console.log(s);
};

let ctxPromise: Promise<GpuContext> | null = null;
const cases = new Map<string, Promise<CaseData>>();

async function parity(req: ParityRequest): Promise<ParityResult> {
  ctxPromise ??= GpuContext.create();
  const ctx = await ctxPromise;
  let c = cases.get(req.case);
  if (!c) {
    c = fetchCase(`/shared/golden/${req.case}/`);
    cases.set(req.case, c);
  }
  const data = await c;
  const info0 = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const adapter = info0 ? `${info0.vendor} ${info0.architecture}`.trim() : 'unknown';
  let kernels: KernelSummary | undefined;
  if (req.tuneBudgetMs !== undefined) {
    const r = await caseModel(ctx, data).prepare({
      budgetMs: req.tuneBudgetMs, timeSoftware: true,
      onProgress: (p) => { if (p.stage === 'tune' && p.tune.entry) log(`tuning ${p.tune.done}/${p.tune.total} ${p.tune.op} ${p.tune.class}: ${p.tune.entry.chosen}`); },
    });
    kernels = summary(r, adapter);
    log(`kernels: ${r.source}, ${r.timed} classes timed, ${r.compiled} pipelines compiled ahead`);
  }
  const refs = data.tensors.names();
  const t0 = performance.now();
  const rows: GoldenRow[] = [];
  const presence: string[] = [];
  const frameMs: number[] = [];
  let expected: string[];
  if (req.what === 'prompts') {
    const stages = [imageEncoderStage, promptStage];
    expected = stages.flatMap((s) => s.produces(refs));
    const report = await runGolden(ctx, data, stages, { onStage: (n, k) => log(`${req.case}: stage ${n} (${k} tensors)`) });
    rows.push(...report.rows);
  } else {
    expected = refs.filter((n) => /^video\.(click\d+|pass\d+)\./.test(n));
    for await (const [name, v] of replayScript(ctx, data, {
      onFrame: (tag, f, ms) => { frameMs.push(ms); log(`${req.case}: ${tag} frame ${f}: ${ms.toFixed(0)} ms`); },
    })) {
      rows.push(compareWithReference(data, name, v));
      if (name.endsWith('object_score_logits')) {
        const ref = data.tensors.getF32(name)[0]!;
        if ((ref > 0) !== (v[0]! > 0)) presence.push(`${name}: ours ${v[0]}, reference ${ref}`);
      }
    }
  }
  return {
    rows, expected, presence, table: formatTable(rows), seconds: (performance.now() - t0) / 1000, frameMs, adapter, kernels,
  };
}

/**
 * A later page on the same browser profile: the case's model prepared again (tuning 'auto') on a
 * new device: the table stored in IndexedDB by `parity` is used, nothing is timed.
 */
async function kernelsAgain(caseName: string): Promise<KernelSummary & { dispatches: number }> {
  const ctx = await GpuContext.create();
  const data = await fetchCase(`/shared/golden/${caseName}/`);
  const m = EfficientTAM.load(ctx, data.weights, data.config);
  const d0 = ctx.stats.dispatches;
  const r = await m.prepare({ budgetMs: 60_000 });
  const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const out = { ...summary(r, info ? `${info.vendor} ${info.architecture}`.trim() : 'unknown'), dispatches: ctx.stats.dispatches - d0 };
  ctx.destroy();
  return out;
}

declare global {
  interface Window {
    etamParity(req: ParityRequest): Promise<ParityResult>;
    etamKernelsAgain(caseName: string): Promise<KernelSummary & { dispatches: number }>;
  }
}
window.etamParity = parity;
window.etamKernelsAgain = kernelsAgain;
logEl.textContent = 'ready';
