/**
 * The golden cases in a browser: a case folder read over HTTP (config.json, weights.safetensors,
 * tensors.safetensors) into the same `CaseData` that src/golden/case.ts reads from disk, so the
 * same stages, comparisons and bounds apply (src/golden/compare.ts).
 */
import { loadWeights } from '../weights/load.js';
import type { CaseData } from '../golden/case.js';
import { toleranceRule } from '../golden/compare.js';

/** Loads a case folder from a URL (e.g. `/shared/golden/tiny/`). */
export async function fetchCase(baseUrl: string): Promise<CaseData> {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const res = await fetch(`${base}config.json`);
  if (!res.ok) throw new Error(`${base}config.json: HTTP ${res.status} ${res.statusText}`);
  const config: unknown = await res.json();
  const [weights, tensors] = await Promise.all([
    loadWeights(`${base}weights.safetensors`),
    loadWeights(`${base}tensors.safetensors`),
  ]);
  return { dir: base, config, weights, tensors, rule: toleranceRule(weights) };
}
