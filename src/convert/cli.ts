/**
 * Node command line: convert an official EfficientTAM checkpoint to safetensors.
 *
 *   npx tsx src/convert/cli.ts efficienttam_ti.pt efficienttam_ti.safetensors [--f16]
 */
import { readFile, writeFile } from 'node:fs/promises';
import { resourceUsage } from 'node:process';
import { convertCheckpoint } from './convert.js';

const USAGE = 'usage: convert <in.pt> <out.safetensors> [--f16]';

async function main(argv: string[]): Promise<void> {
  const f16 = argv.includes('--f16');
  const files = argv.filter((a) => a !== '--f16');
  if (files.length !== 2 || files.some((a) => a.startsWith('-'))) {
    console.error(USAGE);
    process.exit(2);
  }
  const [inPath, outPath] = files as [string, string];
  const t0 = performance.now();
  const buf = await readFile(inPath);
  const t1 = performance.now();
  let count = 0;
  const out = convertCheckpoint(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), {
    f16, source: inPath, onProgress: (done) => { count = done; },
  });
  const t2 = performance.now();
  await writeFile(outPath, out);
  const t3 = performance.now();
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);
  console.log(`${inPath} (${mb(buf.byteLength)} MiB) -> ${outPath} (${mb(out.byteLength)} MiB, ${count} tensors${f16 ? ', F16' : ''})`);
  console.log(`time: read ${(t1 - t0).toFixed(0)} ms, convert ${(t2 - t1).toFixed(0)} ms, write ${(t3 - t2).toFixed(0)} ms`);
  console.log(`memory: rss now ${mb(process.memoryUsage().rss)} MiB, peak rss ${mb(resourceUsage().maxRSS * 1024)} MiB`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
