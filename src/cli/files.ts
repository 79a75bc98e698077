/**
 * Output files that survive: every file the commands write goes to a temporary name beside it
 * (`.NAME.etam-PID.tmp`, in the same folder, so the rename stays on one file system) and is renamed
 * to its name once complete. A run that is stopped at any point leaves each output either complete
 * or absent, never half-written; the temporary files still open are removed when the process
 * exits (`process.on('exit')`, also after process.exit from a signal handler).
 *
 * A write that fails (a full disk, a folder removed under us, ...) becomes a CliError that names
 * the file and the cause in words ("the disk is full"), and the temporary file is removed.
 *
 * Tests replace the file operations through `outputFs` to simulate a full disk deterministically.
 */
import * as fsp from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { decodeImageFile, type DecodedImage } from '../io/image.js';
import { CliError } from './args.js';

/** The file operations outputs go through (a test may replace them, e.g. with a writer that fails). */
export const outputFs = {
  open: (path: string, flags: string): Promise<fsp.FileHandle> => fsp.open(path, flags),
  rename: fsp.rename,
  rm: (path: string) => fsp.rm(path, { force: true }),
  mkdir: (path: string) => fsp.mkdir(path, { recursive: true }),
};

/** Temporary files not yet renamed or removed, removed at exit. */
const pendingTemps = new Set<string>();
let exitHookInstalled = false;

function track(temp: string): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', removeTempsSync);
  }
  pendingTemps.add(temp);
}

/** Removes every temporary file still pending (synchronously: safe in an 'exit' handler). */
export function removeTempsSync(): void {
  for (const t of pendingTemps) {
    try { rmSync(t, { force: true }); } catch { /* nothing more can be done at exit */ }
  }
  pendingTemps.clear();
}

/** The temporary name beside `path`. */
export const tempName = (path: string): string => join(dirname(path), `.${basename(path)}.etam-${process.pid}.tmp`);

/** Why a file operation failed, in words. */
export function describeFsError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err?.code) {
    case 'ENOSPC': return 'the disk is full';
    case 'EDQUOT': return 'the disk quota is used up';
    case 'EACCES': case 'EPERM': return 'permission denied';
    case 'EROFS': return 'read-only file system';
    case 'ENOENT': return 'its folder does not exist (any more)';
    case 'ENOTDIR': case 'EEXIST': case 'EISDIR': return 'a file or folder is in the way';
    case 'EIO': return 'input/output error';
    case 'EFBIG': return 'the file is too large for the file system';
    default: return err instanceof Error ? err.message : String(e);
  }
}

export const writeError = (path: string, e: unknown): CliError =>
  e instanceof CliError ? e : new CliError(`cannot write ${path}: ${describeFsError(e)}`);

/**
 * A file written in pieces under a temporary name; `commit()` renames it into place, `discard()`
 * removes it. Pieces are written in order, one at a time.
 */
export class AtomicFile {
  private tail: Promise<void> = Promise.resolve();
  private failure: CliError | null = null;
  private done = false;

  private constructor(readonly path: string, private readonly temp: string, private readonly fh: fsp.FileHandle) {}

  static async create(path: string): Promise<AtomicFile> {
    const temp = tempName(path);
    let fh: fsp.FileHandle;
    try {
      fh = await outputFs.open(temp, 'w');
    } catch (e) {
      throw writeError(path, e);
    }
    track(temp);
    return new AtomicFile(path, temp, fh);
  }

  /** Appends `data` after the pieces before it; rejects (a CliError naming the file) if a write failed. */
  write(data: string | Uint8Array): Promise<void> {
    const next = this.tail.then(async () => {
      if (this.failure) throw this.failure;
      try {
        if (typeof data === 'string') await this.fh.write(data);
        else await this.fh.write(data);
      } catch (e) {
        this.failure = writeError(this.path, e);
        throw this.failure;
      }
    });
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Waits for the writes in flight (whatever their outcome). */
  settled(): Promise<void> {
    return this.tail;
  }

  /** Finishes the file and gives it its name. On failure the temporary file is removed. */
  async commit(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.tail;
    try {
      if (this.failure) throw this.failure;
      await this.fh.close();
      await outputFs.rename(this.temp, this.path);
      pendingTemps.delete(this.temp);
    } catch (e) {
      await this.fh.close().catch(() => undefined);
      await outputFs.rm(this.temp).catch(() => undefined);
      pendingTemps.delete(this.temp);
      throw writeError(this.path, e);
    }
  }

  /** Drops the file: nothing is left under either name. */
  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.tail;
    await this.fh.close().catch(() => undefined);
    await outputFs.rm(this.temp).catch(() => undefined);
    pendingTemps.delete(this.temp);
  }
}

/** Writes a whole file atomically (temporary name, then rename). */
/** The image a command was given, decoded; a file that is not one is a CliError naming it. */
export async function readImageArg(path: string): Promise<DecodedImage> {
  try {
    return await decodeImageFile(path);
  } catch (e) {
    throw new CliError(`cannot read ${path} as an image: ${(e as Error).message.split('\n')[0]}`);
  }
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const f = await AtomicFile.create(path);
  try {
    await f.write(data);
  } catch (e) {
    await f.discard();
    throw e;
  }
  await f.commit();
}

/** Creates a folder (and its parents); a failure names it. */
export async function makeDir(path: string): Promise<void> {
  try {
    await outputFs.mkdir(path);
  } catch (e) {
    throw new CliError(`cannot create the folder ${path}: ${describeFsError(e)}`);
  }
}

/**
 * A temporary file name for a program that writes the file itself (ffmpeg): registered for removal
 * at exit until `commitTemp` / `discardTemp`.
 */
export function reserveTemp(path: string): string {
  const temp = tempName(path);
  track(temp);
  return temp;
}

export async function commitTemp(temp: string, path: string): Promise<void> {
  try {
    await outputFs.rename(temp, path);
  } catch (e) {
    await outputFs.rm(temp).catch(() => undefined);
    throw writeError(path, e);
  } finally {
    pendingTemps.delete(temp);
  }
}

export async function discardTemp(temp: string): Promise<void> {
  await outputFs.rm(temp).catch(() => undefined);
  pendingTemps.delete(temp);
}

// -------------------------------------------------------------------------------- signals

const SIGNAL_NUMBERS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const;
export type StopSignal = keyof typeof SIGNAL_NUMBERS;

/** The exit code of a process stopped by `signal` (128 + its number, as shells report it). */
export const signalExitCode = (signal: StopSignal): number => 128 + SIGNAL_NUMBERS[signal];

/**
 * Ctrl-C (SIGINT), SIGTERM and SIGHUP, handled alike while a command runs:
 *   first    `onStop(signal)`: the command finishes what it is writing and stops cleanly;
 *   second   `onQuit(signal)`: close the outputs at once (already complete files stay, the one being
 *            written is completed or dropped), then exit;
 *   third    exit immediately (temporary files are still removed at exit).
 */
export class StopSignals {
  private count = 0;
  /** the first signal received */
  signal: StopSignal | null = null;
  private readonly handlers = new Map<StopSignal, () => void>();

  constructor(private readonly onStop: (s: StopSignal) => void, private readonly onQuit: (s: StopSignal) => Promise<void>) {}

  get stopping(): boolean { return this.count > 0; }
  get exitCode(): number { return this.signal ? signalExitCode(this.signal) : 0; }

  install(): this {
    for (const s of Object.keys(SIGNAL_NUMBERS) as StopSignal[]) {
      const h = () => this.receive(s);
      this.handlers.set(s, h);
      process.on(s, h);
    }
    return this;
  }

  uninstall(): void {
    for (const [s, h] of this.handlers) process.off(s, h);
    this.handlers.clear();
  }

  private receive(s: StopSignal): void {
    this.count++;
    this.signal ??= s;
    if (this.count === 1) {
      this.onStop(s);
    } else if (this.count === 2) {
      const code = this.exitCode;
      void this.onQuit(s).catch(() => undefined).finally(() => process.exit(code));
    } else {
      process.exit(this.exitCode);
    }
  }
}
