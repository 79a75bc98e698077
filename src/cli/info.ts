/**
 * `etam info W`: what a weights file holds: the tensors (count, parameters, dtypes, grouped by
 * module; every one with --tensors), the file's metadata, and the model: the official variant
 * (and where that came from) or the config beside it, and whether the tensors fit it. A file that
 * is no model etam knows is still described, with what it would need to run.
 */
import { stat } from 'node:fs/promises';
import type { SafetensorsFile } from '../io/safetensors.js';
import { buildManifest, diffManifest } from '../weights/manifest.js';
import { CliError, getFlag, getNumber, getString, type CommandSpec, type ParsedArgs } from './args.js';
import { MODEL_OPTIONS, pickConfig, readWeights, weightStats, type ModelArgs } from './model.js';
import { formatBytes } from './progress.js';
import type { Output } from './main.js';
import { hieraSettings, isHiera } from '../model/config.js';

export const INFO: CommandSpec = {
  name: 'info',
  summary: 'Describe a weights file: tensors, dtypes, the variant or config it fits.',
  usage: ['info WEIGHTS [--tensors] [--variant NAME] [--image-size N] [--config FILE]'],
  positionals: [1, 1],
  options: [
    ...MODEL_OPTIONS.filter((o) => o.name !== 'weights'),
    { name: 'tensors', type: 'flag', help: 'list every tensor: name, dtype, shape' },
  ],
};

const millions = (n: number): string => `${(n / 1e6).toFixed(2)} M`;

/** Tensors grouped by their first two name components (image_encoder.trunk, sam_mask_decoder.transformer, ...). */
function groups(w: SafetensorsFile): { prefix: string; tensors: number; parameters: number; dtypes: Set<string> }[] {
  const by = new Map<string, { prefix: string; tensors: number; parameters: number; dtypes: Set<string> }>();
  for (const n of w.names()) {
    const parts = n.split('.');
    const prefix = parts.length > 2 ? parts.slice(0, 2).join('.') : parts.length === 2 ? parts[0]! : n;
    const { dtype, shape } = w.info(n);
    const g = by.get(prefix) ?? { prefix, tensors: 0, parameters: 0, dtypes: new Set<string>() };
    g.tensors++;
    g.parameters += shape.reduce((a, b) => a * b, 1);
    g.dtypes.add(dtype);
    by.set(prefix, g);
  }
  return [...by.values()];
}

export async function info(p: ParsedArgs, out: Output): Promise<number> {
  const arg = p.positional[0]!;
  const args: ModelArgs = {
    weights: arg, variant: getString(p, 'variant'), imageSize: getNumber(p, 'image-size'), config: getString(p, 'config'), command: 'info',
  };
  const { path, weights } = await readWeights(args);
  const s = weightStats(weights);
  const size = (await stat(path)).size;
  out.print(`file:       ${path} (${formatBytes(size)}${/\.pt$/i.test(path) ? ', a PyTorch checkpoint: converted on the fly' : ''})`);
  out.print(`parameters: ${s.parameters.toLocaleString('en-US')} (${millions(s.parameters)}) in ${s.tensors} tensors`);
  out.print(`dtypes:     ${[...s.dtypes].map(([d, v]) => `${d} ${v.tensors} tensors (${millions(v.parameters)})`).join(', ')}`);
  const meta = Object.entries(weights.metadata);
  if (meta.length) out.print(`metadata:   ${meta.map(([k, v]) => `${k}=${v.length > 60 ? `${v.slice(0, 57)}...` : v}`).join(', ')}`);

  let model: Awaited<ReturnType<typeof pickConfig>> | null = null;
  let why = '';
  try {
    model = await pickConfig(weights, path, args);
  } catch (e) {
    if (!(e instanceof CliError)) throw e;
    why = e.message;
  }
  if (model) {
    const cfg = model.config;
    out.print(`model:      ${model.configFrom}`);
    out.print(`variant:    ${model.variant ?? '(not an official variant)'}`);
    const t = cfg.image_encoder.trunk;
    const trunk = isHiera(t) ? `Hiera ${t.embed_dim}-d, stages [${hieraSettings(t).stages.join(', ')}]` : `ViT ${t.embed_dim}-d, ${t.depth} blocks`;
    out.print(`image size: ${cfg.image_size}x${cfg.image_size}; ${trunk}; ` +
      `memory attention ${cfg.memory_attention.num_layers} layers (${String(cfg.memory_attention.layer.cross_attention._target_ ?? '').split('.').pop()})`);
    let fit: string;
    try {
      const d = diffManifest(weights, buildManifest(cfg));
      fit = !d.missing.length && !d.misShaped.length && !d.unexpected.length ? 'every tensor the model needs, and nothing else'
        : `does not fit: ${d.missing.length} missing, ${d.misShaped.length} with the wrong shape, ${d.unexpected.length} not in the model` +
          `${d.missing[0] ? ` (e.g. missing ${d.missing[0]})` : d.misShaped[0] ? ` (e.g. ${d.misShaped[0].name}: expected [${d.misShaped[0].expected}], found [${d.misShaped[0].found}])` : ''}`;
    } catch (e) {
      fit = `the config cannot be checked: ${(e as Error).message}`;
    }
    out.print(`tensors:    ${fit}`);
    for (const n of model.notes) out.print(`note: ${n}`);
  } else {
    out.print(`model:      unknown: ${why.split('\n')[0]}`);
    out.print('needs:      to run it, the model config (--config FILE, or a config.json beside the weights: the resolved');
    out.print("            `model` section, as ../shared/golden/*/config.json); or, for an official checkpoint, `etam convert` of the .pt");
  }
  out.print('modules:');
  const gs = groups(weights);
  const w = Math.max(...gs.map((g) => g.prefix.length));
  for (const g of gs) {
    out.print(`  ${g.prefix.padEnd(w)}  ${String(g.tensors).padStart(4)} tensor${g.tensors === 1 ? " " : "s"} ${millions(g.parameters).padStart(9)}  ${[...g.dtypes].join('/')}`);
  }
  if (getFlag(p, 'tensors')) {
    out.print('tensors:');
    for (const n of weights.names()) {
      const { dtype, shape } = weights.info(n);
      out.print(`  ${n}  ${dtype} [${shape.join(', ')}]`);
    }
  }
  return 0;
}
