/**
 * `etam tune [--weights W | --variant V] [--json] [--force]`: the kernel table for this adapter and
 * model: the stored one (nothing timed), or the candidates timed now and the table stored (see
 * src/tune). Prints each operation's candidates, their median ms per shape class and the choice;
 * `--json` prints the same as JSON. Later loads on this adapter (etam segment / track, a page's
 * EfficientTAM.create) use the stored table.
 */
import { adapterName } from '../gpu/adapter.js';
import { GpuContext } from '../gpu/context.js';
import { ALL_VARIANTS, isVariant, preset, withImageSize } from '../model/config.js';
import { EfficientTAM } from '../model/efficienttam.js';
import { defaultBudgetMs, formatTable } from '../tune/tuner.js';
import { FileTableStore } from '../tune/store.js';
import type { TuningTable } from '../tune/table.js';
import { randomWeights } from '../weights/random.js';
import { CliError, getFlag, getNumber, getString, usageError, type CommandSpec, type ParsedArgs } from './args.js';
import { chooseModel, MODEL_OPTIONS } from './model.js';
import type { Output } from './main.js';

export const TUNE: CommandSpec = {
  name: 'tune',
  summary: 'Time the candidate kernels on this GPU for a model; store and print the choice.',
  usage: ['tune --weights W [--json] [--force] [--budget S]', 'tune --variant NAME [--json] [--force] [--budget S]'],
  positionals: [0, 0],
  options: [
    ...MODEL_OPTIONS,
    { name: 'json', type: 'flag', help: 'print the table as JSON (adapter, and per operation each candidate\'s median ms and the choice)' },
    { name: 'force', type: 'flag', help: 'time the candidates again even when a table is stored for this adapter' },
    { name: 'budget', type: 'number', value: 'S', help: 'time limit of the tuning in seconds (default 5 on a GPU, 60 on a software adapter)' },
    { name: 'precision', type: 'string', value: 'f32|f16', help: "tune for precision 'f16' (half-precision inputs; needs shader-f16)" },
    { name: 'quiet', short: 'q', type: 'flag', help: 'no progress on stderr' },
  ],
  details: `With --variant and no --weights, the model has random weights made from the official
variant's manifest (the kernels' speed does not depend on the values).
Tables are stored under $XDG_CACHE_HOME/efficienttam-webgpu/kernels (else ~/.cache/...), one per
adapter and library version.

example:
  etam tune --variant efficienttam_ti_512x512
  etam tune --variant sam2.1_hiera_tiny --image-size 512`,
};

/** The JSON form: the adapter, and per operation the candidates' ms and the choice per class. */
export function tableJson(table: TuningTable, source: string, store: string): unknown {
  const ops: Record<string, unknown[]> = {};
  for (const e of table.entries) {
    (ops[e.op] ??= []).push({ class: e.class, calls: e.calls, medianMs: e.ms, chosen: e.chosen, default: e.fallback, why: e.why, call: e.call });
  }
  return {
    adapter: table.adapter, library: table.library, source, store, created: table.created,
    budgetMs: table.budgetMs, elapsedMs: table.elapsedMs, complete: table.complete, operations: ops,
  };
}

export async function tune(p: ParsedArgs, out: Output): Promise<number> {
  const cmd = 'tune';
  const weightsArg = getString(p, 'weights'), variantArg = getString(p, 'variant');
  const quiet = getFlag(p, 'quiet');
  const precision = getString(p, 'precision') ?? 'f32';
  if (precision !== 'f32' && precision !== 'f16') throw usageError(cmd, `--precision is f32 or f16, not ${precision}`);
  const budget = getNumber(p, 'budget');
  if (budget !== undefined && !(budget > 0)) throw usageError(cmd, `--budget must be a positive number of seconds, not ${budget}`);
  if (!weightsArg && !variantArg) throw usageError(cmd, 'give the model: --weights W, or --variant NAME for random weights of an official variant');

  let weights, config, what: string;
  if (weightsArg) {
    const c = await chooseModel({ weights: weightsArg, variant: variantArg, imageSize: getNumber(p, 'image-size'), config: getString(p, 'config'), command: cmd, quiet });
    ({ weights, config } = c);
    what = `${c.path} (${c.configFrom})`;
  } else {
    if (!isVariant(variantArg!)) throw usageError(cmd, `--variant ${variantArg} is not one of ${ALL_VARIANTS.join(', ')}`);
    config = preset(variantArg);
    // SAM 2 at another input size (EfficientTAM's sizes are variants of their own)
    const size = getNumber(p, 'image-size');
    if (size !== undefined && size !== config.image_size && variantArg!.startsWith('sam2')) config = withImageSize(config, size);
    weights = randomWeights(config);
    what = `${variantArg} (random weights)`;
  }

  let ctx: GpuContext;
  try {
    ctx = await GpuContext.create();
  } catch (e) {
    throw new CliError(`no WebGPU device: ${(e as Error).message}`);
  }
  try {
    let model: EfficientTAM;
    try {
      model = EfficientTAM.load(ctx, weights, config, { precision });
    } catch (e) {
      throw new CliError(`cannot build the model: ${(e as Error).message}`);
    }
    const store = new FileTableStore(await FileTableStore.defaultFolder());
    const budgetMs = budget !== undefined ? budget * 1000 : defaultBudgetMs(ctx);
    const name = adapterName(ctx.adapter);
    if (!quiet) {
      out.note(`adapter: ${name}`);
      out.note(`model: ${what}${precision === 'f16' ? ', precision f16' : ''}`);
      if (ctx.adapter.software) {
        out.note(`a software adapter (${ctx.adapter.software}): kernels compile in seconds and run far slower than on a GPU, so the budget is ${(budgetMs / 1000).toFixed(0)} s; classes left when it runs out keep the defaults`);
      }
    }
    const r = await model.prepare({
      store, force: getFlag(p, 'force'), budgetMs, compile: false, timeSoftware: true,
      onProgress: (q) => {
        if (quiet || q.stage !== 'tune' || !q.tune.entry) return;
        const e = q.tune.entry;
        out.note(`[${q.tune.done}/${q.tune.total}] ${e.op} ${e.class}: ${e.chosen} (${(q.tune.elapsedMs / 1000).toFixed(1)} s)`);
      },
    });
    const table = r.table!;
    if (getFlag(p, 'json')) {
      out.print(JSON.stringify(tableJson(table, r.source, store.where), null, 1));
    } else {
      out.print(r.source === 'stored table'
        ? `stored table from ${table.created} (nothing timed; --force times again)`
        : `tuned now; stored in ${store.where}${r.saved ? '' : ` (NOT saved: ${r.note})`}`);
      out.print(formatTable(table));
    }
    return 0;
  } finally {
    ctx.destroy();
  }
}
