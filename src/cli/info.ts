/**
 * `etam info W`: what a weights file holds: the variant (and where that came from), the
 * parameter count, the dtypes, the file's metadata.
 */
import { stat } from 'node:fs/promises';
import { getNumber, getString, type CommandSpec, type ParsedArgs } from './args.js';
import { chooseModel, MODEL_OPTIONS, weightStats } from './model.js';
import { formatBytes } from './progress.js';
import type { Output } from './main.js';
import { hieraSettings, isHiera } from '../model/config.js';

export const INFO: CommandSpec = {
  name: 'info',
  summary: 'Describe a weights file: variant, parameter count, dtypes.',
  usage: ['info WEIGHTS [--variant NAME] [--image-size N] [--config FILE]'],
  positionals: [1, 1],
  options: MODEL_OPTIONS.filter((o) => o.name !== 'weights'),
};

export async function info(p: ParsedArgs, out: Output): Promise<number> {
  const arg = p.positional[0]!;
  const c = await chooseModel({
    weights: arg, variant: getString(p, 'variant'), imageSize: getNumber(p, 'image-size'), config: getString(p, 'config'), command: 'info',
  });
  const s = weightStats(c.weights);
  const size = (await stat(c.path)).size;
  const cfg = c.config;
  out.print(`file:       ${c.path} (${formatBytes(size)}${/\.pt$/i.test(c.path) ? ', a PyTorch checkpoint: converted on the fly' : ''})`);
  out.print(`model:      ${c.configFrom}`);
  out.print(`variant:    ${c.variant ?? '(not an official variant)'}`);
  const t = cfg.image_encoder.trunk;
  const trunk = isHiera(t)
    ? `Hiera ${t.embed_dim}-d, stages [${hieraSettings(t).stages.join(', ')}]`
    : `ViT ${t.embed_dim}-d, ${t.depth} blocks`;
  out.print(`image size: ${cfg.image_size}x${cfg.image_size}; ${trunk}; ` +
    `memory attention ${cfg.memory_attention.num_layers} layers (${String(cfg.memory_attention.layer.cross_attention._target_ ?? '').split('.').pop()})`);
  out.print(`parameters: ${s.parameters.toLocaleString('en-US')} (${(s.parameters / 1e6).toFixed(2)} M) in ${s.tensors} tensors`);
  out.print(`dtypes:     ${[...s.dtypes].map(([d, v]) => `${d} ${v.tensors} tensors (${(v.parameters / 1e6).toFixed(2)} M)`).join(', ')}`);
  const meta = Object.entries(c.weights.metadata);
  if (meta.length) out.print(`metadata:   ${meta.map(([k, v]) => `${k}=${v.length > 60 ? `${v.slice(0, 57)}...` : v}`).join(', ')}`);
  for (const n of c.notes) out.print(`note: ${n}`);
  return 0;
}
