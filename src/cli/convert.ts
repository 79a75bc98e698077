/**
 * `etam convert in.pt out.safetensors [--f16]`: an official EfficientTAM, SAM 2 or SAM 2.1
 * checkpoint (a PyTorch zip holding {"model": state_dict}) to safetensors, read without PyTorch
 * (src/convert); it then says which official variant the file is.
 * The output is converted in memory, then written under a temporary name and renamed (files.ts):
 * it is complete or absent, never partial. Its folder is created if needed.
 */
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { resourceUsage } from 'node:process';
import { convertCheckpointAsync } from '../convert/convert.js';
import { CliError, getFlag, usageError, type CommandSpec, type ParsedArgs } from './args.js';
import { makeDir, signalExitCode, StopSignals, writeFileAtomic, type StopSignal } from './files.js';
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
  if (looksLikeSafetensors(buf)) {
    throw usageError('convert', `${inPath} is already a safetensors file: nothing to convert; give it as it is to --weights ` +
      `(etam info ${inPath} describes it)`);
  }
  let count = 0;
  let bytes: Uint8Array;
  // The conversion runs in slices that yield to the event loop, so Ctrl-C, SIGTERM or SIGHUP stop
  // it where it is (nothing has been written yet).
  const abort = new AbortController();
  const stopConverting = new StopSignals((s) => abort.abort(s), async () => undefined).install();
  try {
    bytes = await convertCheckpointAsync(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), {
      f16, source: inPath, onProgress: (done) => { count = done; }, signal: abort.signal,
    });
  } catch (e) {
    if (abort.signal.aborted) return signalExitCode(abort.signal.reason as StopSignal);
    throw new CliError(`cannot convert ${inPath}: ${(e as Error).message}`);
  } finally {
    stopConverting.uninstall();
  }
  const t2 = performance.now();
  await makeDir(dirname(outPath));
  // Ctrl-C, SIGTERM, SIGHUP while writing: leave at once; the temporary file goes with the process
  const signals = new StopSignals((s) => process.exit(signalExitCode(s)), async () => undefined).install();
  try {
    await writeFileAtomic(outPath, bytes);
  } finally {
    signals.uninstall();
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

/** A safetensors file: an 8-byte little-endian header length, then a JSON header starting with '{'. */
function looksLikeSafetensors(b: Uint8Array): boolean {
  if (b.byteLength < 10) return false;
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  return n > 1 && n <= b.byteLength - 8 && b[8] === 0x7b /* { */;
}
