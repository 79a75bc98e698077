/**
 * `npx tsx bench/browser_compile.ts [--node]`: how long headless Chromium (SwiftShader WebGPU)
 * takes to compile the conv2d pipelines the model uses (tests/browser/compile_probe.html), and
 * with --node the same WGSL compiled by Dawn on lavapipe in this process. A fresh browser
 * profile each run, so no shader cache.
 */
import { GpuContext } from '../src/gpu/context.js';
import { launch, openPage, serve } from '../tests/browser/server.js';
import type { CompileTiming } from '../tests/browser/compile_probe.js';
import { convWGSL, type ConvProbe } from '../tests/browser/conv_wgsl.js';

/** The Ti 512x512 model's convs (the tiny model's have the same code but other sizes). */
export const MODEL_CONVS: ConvProbe[] = [
  { label: 'neck conv3x3 256->256 pad 1 (32x32)', B: 1, H: 32, W: 32, Cin: 256, Cout: 256, k: 3, pad: 1, bias: false },
  { label: 'mask downsampler 4->16 s2 pad 1', B: 1, H: 256, W: 256, Cin: 4, Cout: 16, k: 3, stride: 2, pad: 1 },
  { label: 'mask downsampler 16->64 s2 pad 1', B: 1, H: 128, W: 128, Cin: 16, Cout: 64, k: 3, stride: 2, pad: 1 },
  { label: 'mask downsampler 64->256 s2 pad 1', B: 1, H: 64, W: 64, Cin: 64, Cout: 256, k: 3, stride: 2, pad: 1 },
  { label: 'mask downsampler 1->4 s2 pad 1 (direct)', B: 1, H: 512, W: 512, Cin: 1, Cout: 4, k: 3, stride: 2, pad: 1 },
  { label: 'neck conv1x1 192->256', B: 1, H: 32, W: 32, Cin: 192, Cout: 256, k: 1 },
  { label: 'patch embed 16x16 s16 3->192', B: 1, H: 512, W: 512, Cin: 3, Cout: 192, k: 16, stride: 16 },
  { label: 'fuser dwconv 7x7 pad 3 (256)', B: 1, H: 32, W: 32, Cin: 256, Cout: 256, k: 7, pad: 3, groups: 256 },
];

async function main(): Promise<void> {
  const withNode = process.argv.includes('--node');
  const served = await serve();
  const b = await launch();
  let browserRows: CompileTiming[];
  try {
    const { page } = await openPage(b, `${served.origin}/tests/browser/compile_probe.html`, (s) => console.error(`[browser] ${s}`));
    await page.waitForFunction(() => typeof window.etamCompileConvs === 'function');
    browserRows = await page.evaluate((c) => window.etamCompileConvs(c), MODEL_CONVS);
  } finally {
    await b.close();
    await served.close();
  }
  const nodeMs = new Map<string, number>();
  if (withNode) {
    const ctx = await GpuContext.create();
    for (const c of MODEL_CONVS) {
      const t0 = performance.now();
      const module = ctx.device.createShaderModule({ code: convWGSL(c) });
      await ctx.device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      nodeMs.set(c.label!, performance.now() - t0);
    }
    ctx.destroy();
  }
  console.log(`\ncompile ms   ${withNode ? 'Node ms   ' : ''}conv`);
  for (const r of browserRows) {
    const n = nodeMs.get(r.label);
    console.log(`${r.ms.toFixed(0).padStart(10)}   ${withNode ? `${n === undefined ? '' : n.toFixed(0)}`.padStart(7) + '   ' : ''}${r.label}${r.error ? `  ERROR ${r.error}` : ''}`);
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
