/**
 * Random weights of a model made from its manifest: every tensor of the official state dict, with
 * its name and shape, drawn from N(0, std²) with a seed. For benchmarks and tuning without a
 * weights file (`etam tune --variant`, `npm run bench:gpu`): the kernels' work does not depend on
 * the values.
 */
import type { EfficientTAMConfig } from '../model/config.js';
import { parseSafetensors, writeSafetensors, type SafetensorsFile } from '../io/safetensors.js';
import { buildManifest } from './manifest.js';

/** A seeded normal generator (mulberry32 + Box-Muller). */
function normals(seed: number): () => number {
  let s = seed >>> 0;
  const u = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
}

/** The config's model with random f32 weights N(0, std²), as a parsed safetensors file. */
export function randomWeights(cfg: EfficientTAMConfig, opts: { seed?: number; std?: number } = {}): SafetensorsFile {
  const next = normals(opts.seed ?? 1);
  const std = opts.std ?? 0.02;
  const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const e of buildManifest(cfg)) {
    const data = new Float32Array(e.shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = next() * std;
    tensors[e.name] = { dtype: 'F32', shape: e.shape, data };
  }
  return parseSafetensors(writeSafetensors(tensors, { format: 'pt', source: 'random weights' }), 'random weights');
}
