/**
 * Where `etam track` gets its frames: a folder of JPEG/PNG frames, or a video file decoded by
 * ffmpeg. Either way a frame is decoded only when it is asked for, and only a few recent frames
 * are kept (the predictor asks for a frame once, the overlay once more), so memory does not grow
 * with the length of the video.
 *
 *   folder   files *.jpg / *.jpeg / *.png, in the order of their numbers when every name is a
 *            number (00000.jpg, 1.jpg, ...: as the official loader sorts), else in natural order;
 *            decoded with sharp (libvips, libjpeg-turbo: the same RGB as Pillow on the goldens).
 *   video    ffprobe for the size, frame rate and frame count; `ffmpeg ... -f rawvideo -pix_fmt
 *            rgb24 -` piping raw frames. Going backwards (reverse tracking) restarts the decoder a
 *            few frames earlier and keeps those in the cache.
 */
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { checkImageSize, ImageSizeError, MAX_IMAGE_PIXELS } from '../io/image_size.js';
import { loadSharp } from '../io/sharp.js';
import { CliError } from './args.js';
import { commitTemp, discardTemp, reserveTemp } from './files.js';

/** Decoded 8-bit RGB pixels, row-major. */
export interface RgbFrame {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

export interface FrameReader {
  readonly kind: 'folder' | 'video';
  readonly path: string;
  readonly numFrames: number;
  readonly width: number;
  readonly height: number;
  /** frames per second (a video's own; undefined for a folder) */
  readonly fps: number | undefined;
  /** the name outputs of frame i are written under (the file's name without extension, or 00012) */
  frameName(i: number): string;
  /** the file the frame came from (for COCO's file_name) */
  fileName(i: number): string;
  get(i: number): Promise<RgbFrame>;
  close(): void;
}

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png'];
export const VIDEO_EXTENSIONS = ['.mp4', '.mov', '.m4v', '.mkv', '.webm', '.avi'];

/** Opens a folder of frames or a video file. */
export async function openFrames(path: string, o: { cacheSize?: number } = {}): Promise<FrameReader> {
  let st;
  try {
    st = await stat(path);
  } catch {
    throw new CliError(`${path}: no such folder or video file`, 2);
  }
  if (st.isDirectory()) return FolderFrames.open(path, o.cacheSize ?? 3);
  const ext = extname(path).toLowerCase();
  if (IMAGE_EXTENSIONS.includes(ext)) {
    throw new CliError(`${path} is one image; track takes a folder of frames or a video (use 'etam segment' for one image)`, 2);
  }
  return VideoFrames.open(path, o.cacheSize ?? 8);
}

/** Refuses (CliError) a frame size the library does not take, before any frame is decoded. */
function checkFrameSize(what: string, width: number, height: number): void {
  try {
    checkImageSize(what, width, height, { maxPixels: MAX_IMAGE_PIXELS });
  } catch (e) {
    if (e instanceof ImageSizeError) throw new CliError(e.message);
    throw e;
  }
}

/** A small most-recently-used cache of decoded frames. */
class FrameCache {
  private readonly map = new Map<number, RgbFrame>();
  constructor(private readonly size: number) {}
  get(i: number): RgbFrame | undefined {
    const f = this.map.get(i);
    if (f) { this.map.delete(i); this.map.set(i, f); }
    return f;
  }
  put(i: number, f: RgbFrame): void {
    this.map.delete(i);
    this.map.set(i, f);
    while (this.map.size > this.size) this.map.delete(this.map.keys().next().value as number);
  }
  clear(): void { this.map.clear(); }
}

/** One operation at a time (frames are read in order by one consumer, but be safe). */
class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(f: () => Promise<T>): Promise<T> {
    const r = this.tail.then(f, f);
    this.tail = r.catch(() => undefined);
    return r;
  }
}

// ---------------------------------------------------------------------------------- a folder

/** Sorts frame file names: by number when every name (without extension) is a number, else naturally. */
export function sortFrameNames(names: string[]): string[] {
  const stem = (n: string) => basename(n, extname(n));
  if (names.every((n) => /^\d+$/.test(stem(n)))) return [...names].sort((a, b) => Number(stem(a)) - Number(stem(b)) || a.localeCompare(b));
  return [...names].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

class FolderFrames implements FrameReader {
  readonly kind = 'folder';
  readonly fps = undefined;
  private readonly cache: FrameCache;
  private readonly serial = new Serial();

  private constructor(readonly path: string, private readonly files: string[], readonly width: number, readonly height: number, cacheSize: number) {
    this.cache = new FrameCache(cacheSize);
  }

  static async open(dir: string, cacheSize: number): Promise<FolderFrames> {
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch (e) {
      throw new CliError(`${dir}: cannot list the folder (${(e as Error).message})`);
    }
    const files = sortFrameNames(entries.filter((n) => IMAGE_EXTENSIONS.includes(extname(n).toLowerCase())));
    if (files.length === 0) throw new CliError(`${dir}: no frames in it (expected files named like 00000.jpg: ${IMAGE_EXTENSIONS.join(', ')})`, 2);
    const first = join(dir, files[0]!);
    const sharp = await loadSharp();
    let meta;
    try {
      meta = await sharp(first).metadata();
    } catch (e) {
      throw new CliError(`frame 0 (${first}): cannot read it as an image (${(e as Error).message})`);
    }
    if (!meta.width || !meta.height) throw new CliError(`frame 0 (${first}): the image has no size`);
    checkFrameSize(`frame 0 (${first})`, meta.width, meta.height);
    return new FolderFrames(dir, files, meta.width, meta.height, cacheSize);
  }

  get numFrames(): number { return this.files.length; }
  frameName(i: number): string { const f = this.files[i]!; return basename(f, extname(f)); }
  fileName(i: number): string { return this.files[i]!; }

  get(i: number): Promise<RgbFrame> {
    return this.serial.run(async () => {
      const hit = this.cache.get(i);
      if (hit) return hit;
      const file = this.files[i];
      if (file === undefined) throw new CliError(`frame ${i} does not exist (the folder has ${this.files.length} frames)`);
      const path = join(this.path, file);
      let frame: RgbFrame;
      try {
        const sharp = await loadSharp();
        // frames after the first have the first one's size, or are refused before being decoded
        const { data, info } = await sharp(path, { limitInputPixels: Math.max(this.width * this.height, 1) })
          .removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
        frame = { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels: 3 };
      } catch (e) {
        throw new CliError(`frame ${i} (${path}): cannot read it as an image (${(e as Error).message.split('\n')[0]})`);
      }
      if (frame.width !== this.width || frame.height !== this.height) {
        throw new CliError(`frame ${i} (${path}) is ${frame.width}x${frame.height}, but the frames before it are ${this.width}x${this.height}`);
      }
      this.cache.put(i, frame);
      return frame;
    });
  }

  close(): void { this.cache.clear(); }
}

// ----------------------------------------------------------------------------------- ffmpeg

/** The ffmpeg and ffprobe programs (ETAM_FFMPEG / ETAM_FFPROBE override the names on PATH). */
export const ffmpegPath = (): string => process.env.ETAM_FFMPEG || 'ffmpeg';
export const ffprobePath = (): string => process.env.ETAM_FFPROBE || 'ffprobe';

const ffmpegFound = new Map<string, boolean>();
/** Whether ffmpeg runs here. */
export function haveFfmpeg(): boolean {
  const p = ffmpegPath();
  let ok = ffmpegFound.get(p);
  if (ok === undefined) {
    ok = spawnSync(p, ['-version'], { stdio: 'ignore' }).status === 0;
    ffmpegFound.set(p, ok);
  }
  return ok;
}

export const NO_FFMPEG = 'ffmpeg is not installed (or not on PATH). Install it (Debian/Ubuntu: apt install ffmpeg; ' +
  'macOS: brew install ffmpeg), or extract the frames yourself and track the folder: ' +
  'ffmpeg -i VIDEO.mp4 -q:v 2 -start_number 0 frames/%05d.jpg';

interface VideoProbe {
  width: number;
  height: number;
  numFrames: number;
  fps: number | undefined;
}

function probe(path: string): VideoProbe {
  const run = (extra: string[]) => spawnSync(ffprobePath(), ['-v', 'error', '-select_streams', 'v:0', ...extra, '-of', 'json', path], { encoding: 'utf8' });
  const r = run(['-show_entries', 'stream=width,height,nb_frames,r_frame_rate,avg_frame_rate:stream_side_data=rotation']);
  if (r.error) {
    if ((r.error as NodeJS.ErrnoException).code === 'ENOENT') throw new CliError(`${path}: reading a video needs ffprobe. ${NO_FFMPEG}`);
    throw new CliError(`${path}: ffprobe failed (${r.error.message})`);
  }
  if (r.status !== 0) throw new CliError(`${path}: not a video ffmpeg can read (${(r.stderr || '').trim().split('\n').pop()})`);
  type Stream = { width?: number; height?: number; nb_frames?: string; nb_read_packets?: string; r_frame_rate?: string; avg_frame_rate?: string; side_data_list?: { rotation?: number }[] };
  const s = (JSON.parse(r.stdout) as { streams?: Stream[] }).streams?.[0];
  if (!s || !s.width || !s.height) throw new CliError(`${path}: has no video stream`);
  let n = Number(s.nb_frames);
  if (!(n > 0)) {
    // no frame count in the container: count the packets (demuxing only, no decoding)
    const c = run(['-count_packets', '-show_entries', 'stream=nb_read_packets']);
    n = Number((JSON.parse(c.stdout || '{}') as { streams?: Stream[] }).streams?.[0]?.nb_read_packets);
  }
  if (!(n > 0)) throw new CliError(`${path}: cannot tell how many frames the video has`);
  const rate = (q?: string) => { const [a, b] = (q ?? '').split('/').map(Number); return a && b ? a / b : undefined; };
  const rot = Math.abs(Number(s.side_data_list?.find((d) => d.rotation !== undefined)?.rotation ?? 0)) % 180;
  // ffmpeg turns the picture upright when the stream says it is rotated
  const [width, height] = rot === 90 ? [s.height, s.width] : [s.width, s.height];
  return { width, height, numFrames: n, fps: rate(s.avg_frame_rate) ?? rate(s.r_frame_rate) };
}

type Decoder = ChildProcessByStdio<null, Readable, Readable>;

class VideoFrames implements FrameReader {
  readonly kind = 'video';
  private readonly cache: FrameCache;
  private readonly serial = new Serial();
  private proc: Decoder | null = null;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private stream: AsyncIterator<Buffer> | null = null;
  /** index of the next frame the running decoder gives */
  private next = 0;
  private stderr = '';
  /** frames the decoder actually gave, when it ended early */
  private decodedEnd: number | undefined;

  private constructor(readonly path: string, private readonly p: VideoProbe, private readonly cacheSize: number) {
    this.cache = new FrameCache(cacheSize);
  }

  static open(path: string, cacheSize: number): VideoFrames {
    if (!haveFfmpeg()) throw new CliError(`${path}: reading a video needs ffmpeg. ${NO_FFMPEG}`);
    const p = probe(path);
    checkFrameSize(path, p.width, p.height);
    return new VideoFrames(path, p, cacheSize);
  }

  get numFrames(): number { return this.decodedEnd ?? this.p.numFrames; }
  get width(): number { return this.p.width; }
  get height(): number { return this.p.height; }
  get fps(): number | undefined { return this.p.fps; }
  frameName(i: number): string { return String(i).padStart(5, '0'); }
  fileName(i: number): string { return `${basename(this.path)}#${i}`; }

  private stop(): void {
    if (this.proc) {
      this.proc.stdout.destroy();
      this.proc.kill('SIGKILL');
    }
    this.proc = null;
    this.stream = null;
    this.chunks = [];
    this.buffered = 0;
  }

  /** Starts the decoder at frame `from` (frames numbered in presentation order from 0). */
  private start(from: number): void {
    this.stop();
    const args = ['-v', 'error', '-nostdin', '-i', this.path, '-map', '0:v:0'];
    if (from > 0) args.push('-vf', `select=gte(n\\,${from})`);
    args.push('-vsync', '0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-');
    // its own process group: a Ctrl-C at the terminal is for etam, which stops cleanly, not for the decoder
    const proc = spawn(ffmpegPath(), args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.stderr = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (s: string) => { this.stderr = (this.stderr + s).slice(-2000); });
    proc.on('error', (e) => { this.stderr += `\n${e.message}`; });
    this.proc = proc;
    this.stream = proc.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    this.next = from;
  }

  /** The next frame from the decoder, or null at the end of the stream. */
  private async readFrame(): Promise<Uint8Array | null> {
    const size = this.p.width * this.p.height * 3;
    while (this.buffered < size) {
      const r = await this.stream!.next();
      if (r.done) return null;
      this.chunks.push(r.value);
      this.buffered += r.value.length;
    }
    const out = new Uint8Array(size);
    let off = 0;
    while (off < size) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length, size - off);
      out.set(c.subarray(0, take), off);
      off += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    this.buffered -= size;
    return out;
  }

  get(i: number): Promise<RgbFrame> {
    return this.serial.run(async () => {
      const hit = this.cache.get(i);
      if (hit) return hit;
      if (i < 0 || i >= this.numFrames) throw new CliError(`frame ${i} does not exist (${this.path} has ${this.numFrames} frames)`);
      if (!this.proc || i < this.next || i - this.next > 4 * this.cacheSize) {
        // backwards: start a little earlier, so that the frames before i come from the cache
        this.start(i < this.next ? Math.max(0, i - this.cacheSize + 1) : i);
      }
      while (this.next <= i) {
        const data = await this.readFrame();
        if (!data) {
          const why = this.stderr.trim().split('\n').pop();
          if (!why) this.decodedEnd = this.next; // the container announced more frames than there are
          this.stop();
          throw new CliError(`frame ${i} of ${this.path} could not be decoded${why ? ` (ffmpeg: ${why})` : ` (the video ends after ${this.next} frames)`}`);
        }
        this.cache.put(this.next, { data, width: this.p.width, height: this.p.height, channels: 3 });
        this.next++;
      }
      return this.cache.get(i)!;
    });
  }

  close(): void {
    this.stop();
    this.cache.clear();
  }
}

// ------------------------------------------------------------------------- writing a video

/**
 * Encodes RGB frames to an H.264 MP4 through ffmpeg (frames piped raw on stdin). ffmpeg writes a
 * temporary file beside the target, renamed when ffmpeg has finished it (files.ts): the MP4 is
 * complete or absent. ffmpeg runs in its own process group, so a Ctrl-C at the terminal reaches
 * only etam, which then closes the video properly.
 */
export class VideoWriter {
  private readonly proc: ChildProcessByStdio<Writable, null, Readable>;
  private readonly temp: string;
  private stderr = '';
  private failed: Error | null = null;
  private readonly exited: Promise<number | null>;
  private closing: Promise<string | null> | null = null;

  constructor(readonly path: string, readonly width: number, readonly height: number, fps: number) {
    this.temp = reserveTemp(path);
    const args = ['-y', '-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', String(fps), '-i', '-',
      // H.264 in yuv420p needs even sides
      '-vf', 'pad=ceil(iw/2)*2:ceil(ih/2)*2', '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-pix_fmt', 'yuv420p',
      // the temporary name does not say mp4: say it
      '-movflags', '+faststart', '-f', 'mp4', this.temp];
    this.proc = spawn(ffmpegPath(), args, { stdio: ['pipe', 'ignore', 'pipe'], detached: true });
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (s: string) => { this.stderr = (this.stderr + s).slice(-2000); });
    this.proc.on('error', (e) => { this.failed ??= e; });
    this.proc.stdin.on('error', (e) => { this.failed ??= e; });
    // leaving without close(): stop ffmpeg rather than let it finish a file no one will rename
    const killAtExit = () => { this.proc.kill('SIGKILL'); };
    process.on('exit', killAtExit);
    this.exited = new Promise((res) => this.proc.on('close', (code) => { process.off('exit', killAtExit); res(code); }));
  }

  /** Appends a frame (waits while ffmpeg's input pipe is full). */
  async write(rgb: Uint8Array): Promise<void> {
    if (this.failed || this.closing) return;
    if (!this.proc.stdin.write(rgb)) {
      await new Promise<void>((res) => {
        const done = () => { this.proc.stdin.off('drain', done); this.proc.off('close', done); res(); };
        this.proc.stdin.on('drain', done);
        this.proc.on('close', done);
      });
    }
  }

  /**
   * Finishes the file and gives it its name; returns an error message when ffmpeg failed (the
   * partial file is then removed). With `withinMs`, ffmpeg is stopped and the file dropped if it
   * takes longer than that to finish.
   */
  close(withinMs?: number): Promise<string | null> {
    this.closing ??= (async () => {
      this.proc.stdin.end();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = withinMs === undefined ? null : new Promise<'timeout'>((res) => { timer = setTimeout(() => res('timeout'), withinMs); });
      const code = await (timeout ? Promise.race([this.exited, timeout]) : this.exited);
      if (timer) clearTimeout(timer);
      if (code === 'timeout') {
        this.proc.kill('SIGKILL');
        await this.exited;
        await discardTemp(this.temp);
        return `${this.path} not written: ffmpeg did not finish in time`;
      }
      if (this.failed || code !== 0) {
        await discardTemp(this.temp);
        return `ffmpeg could not write ${this.path}: ${this.failed?.message ?? this.stderr.trim().split('\n').pop() ?? `exit code ${code}`}`;
      }
      try {
        await commitTemp(this.temp, this.path);
      } catch (e) {
        return (e as Error).message;
      }
      return null;
    })();
    return this.closing;
  }
}
