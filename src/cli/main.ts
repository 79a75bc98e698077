/**
 * `etam`: EfficientTAM from the terminal.
 *
 *   etam segment IMAGE --weights W --point x,y ... | --box ... --out DIR
 *   etam everything IMAGE --weights W --out DIR [--points-per-side N ...]
 *   etam track (FRAMES_DIR | VIDEO.mp4) --weights W --object 'frame=0 point=x,y' ... --out DIR
 *   etam convert IN.pt OUT.safetensors [--f16]
 *   etam info WEIGHTS
 *   etam tune [--weights W | --variant V] [--json] [--force]
 *
 * Run through bin/etam.js (`npx etam ...`), or directly: `npx tsx src/cli/main.ts ...`.
 * Results and the summary go to stdout; progress, notes and errors to stderr. Exit codes: 0 done,
 * 1 the job failed, 2 the command line is wrong, 130 stopped with Ctrl-C.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MissingPackageError } from '../io/packages.js';
import { DeviceLostError, GpuError } from '../gpu/context.js';
import { ImageSizeError } from '../io/image_size.js';
import { PromptError } from '../model/prompts.js';
import { loadSharp } from '../io/sharp.js';
import { CliError, helpText, parseArgs, type CommandSpec, type ParsedArgs } from './args.js';
import { CONVERT, convert } from './convert.js';
import { EVERYTHING, everything } from './everything.js';
import { INFO, info } from './info.js';
import { SEGMENT, segment } from './segment.js';
import { TRACK, track } from './track.js';
import { TUNE, tune } from './tune.js';

/** Where a command writes: `print` results (stdout), `note` remarks (stderr). */
export interface Output {
  print(line: string): void;
  note(line: string): void;
}

const COMMANDS: { spec: CommandSpec; run: (p: ParsedArgs, out: Output) => Promise<number> }[] = [
  { spec: SEGMENT, run: segment },
  { spec: EVERYTHING, run: everything },
  { spec: TRACK, run: track },
  { spec: CONVERT, run: convert },
  { spec: INFO, run: info },
  { spec: TUNE, run: tune },
];

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '?';
  } catch {
    return '?';
  }
}

function mainHelp(): string {
  const w = Math.max(...COMMANDS.map((c) => c.spec.name.length)) + 2;
  return [
    'etam: EfficientTAM (Efficient Track Anything) on WebGPU, from the terminal.',
    '',
    'usage: etam COMMAND [options]     (etam COMMAND --help for its options)',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.spec.name.padEnd(w)}${c.spec.summary}`),
    '',
    'example (masks of two objects on 200 frames, with the small test model):',
    '  etam track ../shared/data/bedroom --weights ../shared/golden/tiny \\',
    "    --object 'frame=0 point=528,324' --object 'frame=0 box=96,108,384,378' --out out/bedroom",
  ].join('\n');
}

const defaultOutput: Output = {
  print: (l) => { process.stdout.write(`${l}\n`); },
  note: (l) => { process.stderr.write(`${l}\n`); },
};

/** Runs the command line (without `node` and the script); returns the exit code. */
export async function runCli(argv: readonly string[], out: Output = defaultOutput): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    const sub = name === 'help' ? COMMANDS.find((c) => c.spec.name === rest[0]) : undefined;
    out.print(sub ? helpText(sub.spec) : mainHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    out.print(version());
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.spec.name === name);
  try {
    if (!cmd) throw new CliError(`unknown command '${name}'; the commands are ${COMMANDS.map((c) => c.spec.name).join(', ')} (etam --help)`, 2);
    const parsed = parseArgs(cmd.spec, rest);
    if (parsed.help) {
      out.print(helpText(cmd.spec));
      return 0;
    }
    return await cmd.run(parsed, out);
  } catch (e) {
    if (e instanceof MissingPackageError || e instanceof GpuError || e instanceof DeviceLostError || e instanceof ImageSizeError || e instanceof PromptError) {
      // an install away, the GPU's refusal, or an input the library names: not a bug, no stack
      out.note(`etam${cmd ? ` ${cmd.spec.name}` : ''}: error: ${e.message}`);
      return 1;
    }
    if (e instanceof CliError) {
      out.note(`etam${cmd ? ` ${cmd.spec.name}` : ''}: error: ${e.message}`);
      if (e.exitCode === 2 && e.command) out.note(`(etam ${e.command} --help shows the options)`);
      return e.exitCode;
    }
    // not foreseen: the stack helps a bug report
    out.note(`etam${cmd ? ` ${cmd.spec.name}` : ''}: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return 1;
  }
}

/** Waits until stdout and stderr have handed everything to the OS (pipes are asynchronous). */
const drain = (): Promise<unknown> => Promise.all([process.stdout, process.stderr].map((s) => new Promise((r) => s.write('', r))));

/** The process entry point. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<never> {
  // libvips keeps up to 50 MB of decoded images and operations for reuse; every frame is read once
  // here, so the cache would only grow the process (a long track's RSS then stays flat)
  try { (await loadSharp()).cache(false); } catch { /* sharp missing: the commands that need it say so */ }
  // a terminal that goes away (SIGHUP) or a closed pipe must not turn a clean stop into a crash
  for (const s of [process.stdout, process.stderr]) s.on('error', () => undefined);
  const code = await runCli(argv);
  await drain();
  // The WebGPU device keeps the event loop alive: leave explicitly.
  process.exit(code);
}

const isEntry = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (isEntry) void main();
