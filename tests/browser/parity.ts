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

export interface ParityRequest {
  case: string;
  what: 'prompts' | 'video';
}

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
  const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  return {
    rows, expected, presence, table: formatTable(rows), seconds: (performance.now() - t0) / 1000, frameMs,
    adapter: info ? `${info.vendor} ${info.architecture}`.trim() : 'unknown',
  };
}

declare global {
  interface Window {
    etamParity(req: ParityRequest): Promise<ParityResult>;
  }
}
window.etamParity = parity;
logEl.textContent = 'ready';
