/**
 * Probe page for pipeline compile times in the browser (driven by bench/browser_compile.ts):
 *
 *   await window.etamCompileConvs([{ B, H, W, Cin, Cout, k, stride, pad }, ...])
 *     -> the WGSL conv2d generates for each geometry, and how long the browser took to compile it;
 *   await window.etamCompile([{ label, wgsl }, ...]) -> the same for given WGSL.
 *
 * Each pipeline is compiled with createComputePipelineAsync and timed to its resolution. Browsers
 * cache compiled shaders by their code, so a WGSL text is only timed properly the first time in a
 * browser profile.
 */
import { convWGSL, type ConvProbe } from './conv_wgsl.js';

export interface CompileTiming { label: string; ms: number; chars: number; error?: string }

const logEl = document.getElementById('log')!;
const log = (s: string) => {
  logEl.textContent += `\n${s}`;
  console.log(s);
};

let devicePromise: Promise<GPUDevice> | null = null;
async function device(): Promise<GPUDevice> {
  devicePromise ??= (async () => {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) throw new Error('no WebGPU adapter');
    return adapter.requestDevice({ requiredFeatures: adapter.features.has('shader-f16') ? ['shader-f16'] : [] });
  })();
  return devicePromise;
}

async function compile(shaders: { label: string; wgsl: string }[]): Promise<CompileTiming[]> {
  const dev = await device();
  const out: CompileTiming[] = [];
  for (const { label, wgsl } of shaders) {
    const t0 = performance.now();
    let error: string | undefined;
    try {
      const module = dev.createShaderModule({ label, code: wgsl });
      await dev.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint: 'main' } });
    } catch (e) {
      error = String(e);
    }
    const ms = performance.now() - t0;
    log(`${label}: ${ms.toFixed(0)} ms${error ? ` (${error})` : ''}`);
    out.push({ label, ms, chars: wgsl.length, error });
  }
  return out;
}

declare global {
  interface Window {
    etamCompile(shaders: { label: string; wgsl: string }[]): Promise<CompileTiming[]>;
    etamCompileConvs(convs: ConvProbe[]): Promise<CompileTiming[]>;
  }
}
window.etamCompile = compile;
window.etamCompileConvs = (convs) => compile(convs.map((c) => ({ label: c.label ?? JSON.stringify(c), wgsl: convWGSL(c) })));
logEl.textContent = 'ready';
