/**
 * The golden comparison: runs every registered stage (src/golden/stages.ts) on a case folder and
 * prints, per reference tensor produced, the max abs error against the reference and its bound.
 *
 *   npx tsx tools/golden.ts <case folder> [--only stage1,stage2] [--kernels tuned|off|gpu]
 *                           [--precision f16 [--keep-f32 prefix,...] [--f16-attention on|off]] [--json FILE]
 *   npm run golden -- /work/shared/golden/tiny
 *
 * --kernels: 'off' (default) the adapter's default kernels; 'tuned' the kernel table tuned for
 * this adapter on the case's model (or the stored one: EfficientTAM.prepare, tuning 'auto');
 * 'gpu' the GPU-shaped defaults whatever the adapter (to check them on lavapipe).
 * --precision f16: the model at precision 'f16' (src/model/precision.ts), its policy overridden
 * by --keep-f32 (weight name prefixes kept f32) and --f16-attention; the report then measures f16.
 * --json FILE: the rows as JSON too.
 *
 * Exits 1 if any comparison fails, 2 on bad usage or an unreadable case.
 */
import { writeFileSync } from 'node:fs';
import { GpuContext } from '../src/gpu/context.js';
import { formatReport, loadCase, runGolden } from '../src/golden/case.js';
import { stages } from '../src/golden/registry.js';
import { caseModel } from '../src/golden/stages.js';
import type { LoadOptions } from '../src/model/efficienttam.js';

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  let only: string[] | undefined;
  let kernels = 'off', precision = 'f32', json: string | undefined;
  let keepF32: string[] | undefined, f16Attention: boolean | undefined;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--kernels') kernels = args[++i] ?? '';
    else if (a === '--precision') precision = args[++i] ?? '';
    else if (a === '--keep-f32') keepF32 = (args[++i] ?? '').split(',').filter(Boolean);
    else if (a === '--f16-attention') f16Attention = (args[++i] ?? '') === 'on';
    else if (a === '--json') json = args[++i];
    else if (a === '--only') only = (args[++i] ?? '').split(',').filter(Boolean);
    else if (a.startsWith('--only=')) only = a.slice(7).split(',').filter(Boolean);
    else if (a === '-h' || a === '--help') rest.length = 0, rest.push('--help');
    else rest.push(a);
  }
  if (rest.length !== 1 || rest[0] === '--help' || !['off', 'tuned', 'gpu'].includes(kernels) || !['f32', 'f16'].includes(precision)) {
    console.error('usage: tsx tools/golden.ts <case folder> [--only stage1,stage2] [--kernels tuned|off|gpu] [--precision f16 [--keep-f32 a,b] [--f16-attention on|off]] [--json FILE]');
    console.error(`stages: ${stages.map((s) => s.name).join(', ') || '(none registered)'}`);
    return 2;
  }
  const dir = rest[0]!;
  if (only) {
    const unknown = only.filter((n) => !stages.some((s) => s.name === n));
    if (unknown.length) {
      console.error(`unknown stage(s): ${unknown.join(', ')}; stages: ${stages.map((s) => s.name).join(', ')}`);
      return 2;
    }
  }

  let c;
  try {
    c = await loadCase(dir);
  } catch (e) {
    console.error(`cannot load case ${dir}: ${(e as Error).message}`);
    return 2;
  }
  const weightDtypes = [...new Set(c.weights.names().map((n) => c.weights.info(n).dtype))].join('/');
  console.log(`case ${dir}: ${c.weights.names().length} weights (${weightDtypes}), ${c.tensors.names().length} reference tensors; ` +
    `float bound: ${c.rule === 'f16' ? '3e-3*max|ref| (f16 weights)' : '1e-3*max|ref| + 1e-4 (f32 weights)'}`);

  const ctx = await GpuContext.create();
  try {
    if (precision === 'f16') {
      const load: LoadOptions = { precision: 'f16', f16Policy: { keepF32, attention: f16Attention } };
      c.load = load;
      console.log(`precision f16${keepF32 ? `, kept f32: ${keepF32.join(', ') || '(none)'}` : ''}${f16Attention !== undefined ? `, f16 attention ${f16Attention ? 'on' : 'off'}` : ''}`);
    }
    if (kernels === 'gpu') ctx.kernels.defaults = 'gpu';
    if (kernels === 'tuned') {
      const r = await caseModel(ctx, c).prepare({
        timeSoftware: true,
        onProgress: (p) => { if (p.stage === 'tune' && p.tune.entry) process.stderr.write(`tuning ${p.tune.done}/${p.tune.total} ${p.tune.op} ${p.tune.class}: ${p.tune.entry.chosen}\n`); },
      });
      console.log(`kernels: ${r.source}${r.note ? ` (${r.note})` : ''}; ${r.table?.entries.filter((e) => e.chosen !== e.fallback).length ?? 0} classes differ from the defaults`);
    } else {
      console.log(`kernels: ${kernels === 'gpu' ? 'GPU-shaped defaults' : 'the adapter\'s defaults'}`);
    }
    const report = await runGolden(ctx, c, stages, {
      only,
      onStage: (name, n) => process.stderr.write(`running ${name} (${n} reference tensors)...\n`),
    });
    for (const s of report.seconds) process.stderr.write(`  ${s.stage}: ${s.seconds.toFixed(1)} s\n`);
    console.log(formatReport(c, report));
    if (json) writeFileSync(json, JSON.stringify({ case: dir, kernels, precision, keepF32, f16Attention, rows: report.rows }, null, 1));
    return report.pass ? 0 : 1;
  } finally {
    ctx.destroy();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(2);
  },
);
