/**
 * `etam convert in.pt out.safetensors [--f16]`: an official EfficientTAM, SAM 2 or SAM 2.1
 * checkpoint (a PyTorch zip holding {"model": state_dict}) to safetensors, read without PyTorch
 * (src/convert). It then says which official variant the file is.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { resourceUsage } from 'node:process';
import { convertCheckpoint } from '../convert/convert.js';
import { CliError, getFlag, type CommandSpec, type ParsedArgs } from './args.js';
import { formatBytes } from './progress.js';
import { parseSafetensors } from '../io/safetensors.js';
import { detectVariant } from '../weights/variant.js';
import type { Output } from './main.js';

export const CONVERT: CommandSpec = {
  name: 'convert',
  summary: 'Convert an official PyTorch checkpoint (.pt) to safetensors (no Python needed).',
  usage: ['convert IN.pt OUT.safetensors [--f16]'],
  positionals: [2, 2],
  options: [{ name: 'f16', type: 'flag', help: 'store floating-point tensors as F16 (half the size)' }],
};

export async function convert(p: ParsedArgs, out: Output): Promise<number> {
  const [inPath, outPath] = p.positional as [string, string];
  const f16 = getFlag(p, 'f16');
  const t0 = performance.now();
  let buf: Buffer;
  try {
    buf = await readFile(inPath);
  } catch (e) {
    throw new CliError(`cannot read ${inPath}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  const t1 = performance.now();
  let count = 0;
  let bytes: Uint8Array;
  try {
    bytes = convertCheckpoint(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), {
      f16, source: inPath, onProgress: (done) => { count = done; },
    });
  } catch (e) {
    throw new CliError(`cannot convert ${inPath}: ${(e as Error).message}`);
  }
  const t2 = performance.now();
  try {
    await writeFile(outPath, bytes);
  } catch (e) {
    throw new CliError(`cannot write ${outPath}: ${(e as Error).message}`);
  }
  const t3 = performance.now();
  out.print(`${inPath} (${formatBytes(buf.byteLength)}) -> ${outPath} (${formatBytes(bytes.byteLength)}, ${count} tensors${f16 ? ', F16' : ''})`);
  // which official model it is (the tensors tell; a file of no official variant is converted all the same)
  try {
    const d = detectVariant(parseSafetensors(bytes, outPath));
    out.print(`model:  ${d.variant}${d.family === 'efficienttam' ? ' (or another EfficientTAM variant with the same tensors: `etam info` says which)' : ''}`);
  } catch (e) {
    out.note(`note: not an official variant's tensors (${(e as Error).message.split('\n')[0]}); load it with --config`);
  }
  out.print(`time: read ${(t1 - t0).toFixed(0)} ms, convert ${(t2 - t1).toFixed(0)} ms, write ${(t3 - t2).toFixed(0)} ms`);
  out.print(`memory: rss now ${formatBytes(process.memoryUsage().rss)}, peak rss ${formatBytes(resourceUsage().maxRSS * 1024)}`);
  return 0;
}
