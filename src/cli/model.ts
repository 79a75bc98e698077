/**
 * Weights and config for the commands. Which model a weights file is:
 *
 *   1. `--config FILE`: that config (the resolved `model` section, as the goldens' config.json);
 *   2. a `config.json` next to the weights that is an EfficientTAM config (a golden case folder,
 *      or your own export): that config;
 *   3. otherwise the official variant, recognised from the tensors (detectVariant): for SAM 2 /
 *      SAM 2.1 (a Hiera trunk) the tensors tell the size and the version, and the input size is
 *      1024 unless `--image-size` (a multiple of 32) says otherwise; for EfficientTAM the ViT width
 *      tells Ti from S; the input size (1024 / 512) and the pooled cross-attention (_1, _2) cannot
 *      be seen in the tensors, so they come from `--variant` / `--image-size`, the file's metadata
 *      or its name (efficienttam_s_512x512.safetensors), else 1024 and the plain attention (with a
 *      note saying so).
 *
 * `--weights` may also name a folder holding weights.safetensors (and config.json).
 */
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GpuContext } from '../gpu/context.js';
import { EfficientTAM } from '../model/efficienttam.js';
import { WeightValueError } from '../io/weights.js';
import { ALL_VARIANTS, isVariant, type EfficientTAMConfig, type Variant } from '../model/config.js';
import type { SafetensorsFile } from '../io/safetensors.js';
import { detectVariant, officialVariantOf } from '../weights/variant.js';
import { loadWeights } from '../weights/load.js';
import { CliError, usageError, type OptionSpec } from './args.js';
import { Progress } from './progress.js';
import { FileTableStore } from '../tune/store.js';
import { contextKey } from '../tune/table.js';

export interface ModelChoice {
  /** the weights file read */
  path: string;
  weights: SafetensorsFile;
  config: EfficientTAMConfig;
  /** where the config came from: 'config FILE', 'variant NAME', ... */
  configFrom: string;
  /** the official variant, when the config is one */
  variant: Variant | undefined;
  /** what was assumed (printed unless --quiet) */
  notes: string[];
}

export interface ModelArgs {
  weights: string | undefined;
  variant?: string;
  imageSize?: number;
  config?: string;
  command: string;
  quiet?: boolean;
}

/** Resolves `--weights` to a file (a folder: its weights.safetensors). */
export async function weightsPath(arg: string | undefined, command: string): Promise<string> {
  if (!arg) throw usageError(command, '--weights is required: the model weights (.safetensors, or an official .pt checkpoint)');
  let st;
  try {
    st = await stat(arg);
  } catch {
    throw new CliError(`weights file not found: ${arg}`);
  }
  if (st.isDirectory()) {
    const inside = join(arg, 'weights.safetensors');
    if (!existsSync(inside)) throw new CliError(`${arg} is a folder without weights.safetensors; give the weights file`);
    return inside;
  }
  return arg;
}

/** An EfficientTAM config (the `model` section), not some other tool's config.json. */
const looksLikeModelConfig = (c: unknown): boolean =>
  !!c && typeof c === 'object' && 'image_encoder' in c && 'image_size' in c && 'memory_attention' in c;

async function readConfig(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read the config ${path}: ${(e as Error).message}`);
  }
  try {
    const c = JSON.parse(text) as { model?: unknown };
    return c && typeof c === 'object' && 'model' in c && looksLikeModelConfig(c.model) ? c.model : c;
  } catch (e) {
    throw new CliError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Reads the weights (with a progress bar for big files) and picks the config. */
export async function chooseModel(a: ModelArgs): Promise<ModelChoice> {
  checkModelArgs(a);
  const { path, weights } = await readWeights(a);
  return { path, weights, ...(await pickConfig(weights, path, a)) };
}

function checkModelArgs(a: ModelArgs): void {
  if (a.variant !== undefined && !isVariant(a.variant)) {
    throw usageError(a.command, `--variant ${a.variant} is not one of ${ALL_VARIANTS.join(', ')}`);
  }
  if (a.imageSize !== undefined && !(a.imageSize > 0 && a.imageSize % 32 === 0)) {
    throw usageError(a.command, `--image-size is 1024 or 512 for EfficientTAM, a multiple of 32 for SAM 2 (default 1024), not ${a.imageSize}`);
  }
}

/** Reads `--weights` (a .safetensors or a .pt converted on the fly), with a progress bar for big files. */
export async function readWeights(a: ModelArgs): Promise<{ path: string; weights: SafetensorsFile }> {
  checkModelArgs(a);
  const path = await weightsPath(a.weights, a.command);
  const size = (await stat(path)).size;
  const bar = new Progress('weights', Math.ceil(size / 2 ** 20), { enabled: !a.quiet && size > 64 * 2 ** 20, unit: 'MiB', rate: false });
  let weights: SafetensorsFile;
  try {
    weights = await loadWeights(path, { onProgress: (n) => bar.update(Math.floor(n / 2 ** 20)) });
  } catch (e) {
    throw new CliError(`cannot read the weights ${path}: ${(e as Error).message}\n` +
      '(expected a .safetensors file, e.g. from `etam convert`, or an official EfficientTAM / SAM 2 / SAM 2.1 .pt checkpoint)');
  }
  bar.finish();
  return { path, weights };
}

/** The config for weights read from `path`: --config, a config.json beside them, or the official variant they are. */
export async function pickConfig(weights: SafetensorsFile, path: string, a: ModelArgs): Promise<Omit<ModelChoice, 'path' | 'weights'>> {
  const notes: string[] = [];
  let config: EfficientTAMConfig;
  let configFrom: string;
  let variant: Variant | undefined;
  const beside = join(dirname(path), 'config.json');
  if (a.config !== undefined || (a.variant === undefined && a.imageSize === undefined && existsSync(beside))) {
    const file = a.config ?? beside;
    const c = await readConfig(file);
    if (!looksLikeModelConfig(c)) {
      if (a.config !== undefined) throw new CliError(`${file} is not a model config (no image_encoder / image_size / memory_attention)`);
    } else {
      config = c as EfficientTAMConfig;
      configFrom = `config ${file}`;
      try {
        variant = officialVariantOf(config);
      } catch {
        variant = undefined;
      }
      return { config, configFrom, variant, notes };
    }
  }
  try {
    const d = detectVariant(weights, { variant: a.variant as Variant | undefined, imageSize: a.imageSize });
    config = d.config;
    variant = d.variant;
    configFrom = a.variant ? `--variant ${d.variant}` : `variant ${d.variant} (recognised from the weights; input size from ${d.imageSizeFrom})`;
    for (const n of d.notes) notes.push(n.replace(/pass imageSize: 512/, 'pass --image-size 512').replace(/pass crossAttention .*$/, 'pass --variant efficienttam_*_1 / _2 for those'));
  } catch (e) {
    throw new CliError(`${(e as Error).message}\n(a model that is not an official variant needs its config: --config FILE, ` +
      'or a config.json beside the weights, as in ../shared/golden/tiny)');
  }
  return { config, configFrom, variant, notes };
}

/** Parameter count and dtypes of a weights file. */
export function weightStats(w: SafetensorsFile): { tensors: number; parameters: number; dtypes: Map<string, { tensors: number; parameters: number }> } {
  let parameters = 0;
  const dtypes = new Map<string, { tensors: number; parameters: number }>();
  for (const n of w.names()) {
    const { dtype, shape } = w.info(n);
    const k = shape.reduce((a, b) => a * b, 1);
    parameters += k;
    const d = dtypes.get(dtype) ?? { tensors: 0, parameters: 0 };
    d.tensors++;
    d.parameters += k;
    dtypes.set(dtype, d);
  }
  return { tensors: w.names().length, parameters, dtypes };
}

/** The options of the commands that run the model. */
export const MODEL_OPTIONS: OptionSpec[] = [
  { name: 'weights', short: 'w', type: 'string', value: 'FILE', help: 'model weights: .safetensors (or an official .pt), or a folder with\nweights.safetensors and config.json' },
  { name: 'variant', type: 'string', value: 'NAME', help: 'official variant, when the weights cannot tell: efficienttam_ti, _ti_1, _ti_2,\n_ti_512x512, efficienttam_s, _s_1, _s_2, _s_512x512; sam2_hiera_{tiny,small,\nbase_plus,large}, sam2.1_hiera_* (SAM 2 files are recognised; checked against them)' },
  { name: 'image-size', type: 'int', value: 'N', help: 'input size: 1024 or 512 for EfficientTAM, a multiple of 32 for SAM 2\n(the weights cannot tell; default 1024)' },
  { name: 'config', type: 'string', value: 'FILE', help: 'model config JSON (default: config.json next to the weights, if any)' },
];

/** Creates the GPU context and builds the model on it. */
export async function buildModel(choice: ModelChoice): Promise<{ ctx: GpuContext; model: EfficientTAM }> {
  let ctx: GpuContext;
  try {
    ctx = await GpuContext.create();
  } catch (e) {
    throw new CliError(`no WebGPU device: ${(e as Error).message}`);
  }
  let model: EfficientTAM;
  try {
    // EfficientTAM.create without its kernel preparation (below): load, then the values' check
    model = EfficientTAM.load(ctx, choice.weights, choice.config);
    try {
      await model.checkWeights();
    } catch (e) {
      model.release();
      throw e;
    }
  } catch (e) {
    ctx.destroy();
    if (e instanceof WeightValueError) throw new CliError(`the weights ${choice.path} are damaged: ${e.message}`);
    throw new CliError(`the weights ${choice.path} do not fit the model (${choice.configFrom}):\n${(e as Error).message}`);
  }
  // the kernel table `etam tune` stored for this adapter, if any (nothing is timed here), and the
  // model's pipelines compiled ahead
  const store = new FileTableStore(await FileTableStore.defaultFolder());
  const stored = await store.load(contextKey(ctx));
  await model.prepare({ tuning: stored ?? 'off', store: null });
  return { ctx, model };
}
