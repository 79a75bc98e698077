/**
 * The golden comparison: runs every registered stage (src/golden/stages.ts) on a case folder and
 * prints, per reference tensor produced, the max abs error against the reference and its bound.
 *
 *   npx tsx tools/golden.ts <case folder> [--only stage1,stage2]
 *   npm run golden -- /work/shared/golden/tiny
 *
 * Exits 1 if any comparison fails, 2 on bad usage or an unreadable case.
 */
import { GpuContext } from '../src/gpu/context.js';
import { formatReport, loadCase, runGolden } from '../src/golden/case.js';
import { stages } from '../src/golden/registry.js';

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  let only: string[] | undefined;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--only') only = (args[++i] ?? '').split(',').filter(Boolean);
    else if (a.startsWith('--only=')) only = a.slice(7).split(',').filter(Boolean);
    else if (a === '-h' || a === '--help') rest.length = 0, rest.push('--help');
    else rest.push(a);
  }
  if (rest.length !== 1 || rest[0] === '--help') {
    console.error('usage: tsx tools/golden.ts <case folder> [--only stage1,stage2]');
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
    const report = await runGolden(ctx, c, stages, {
      only,
      onStage: (name, n) => process.stderr.write(`running ${name} (${n} reference tensors)...\n`),
    });
    for (const s of report.seconds) process.stderr.write(`  ${s.stage}: ${s.seconds.toFixed(1)} s\n`);
    console.log(formatReport(c, report));
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
