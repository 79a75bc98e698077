/** Shared test helpers: one GPU context per test file, seeded random data, error measures. */
import { GpuContext } from '../src/gpu/context.js';
import type { ImageSource } from '../src/kernels/preprocess.js';
import type { Output } from '../src/cli/main.js';

let ctxPromise: Promise<GpuContext> | null = null;

/** The test file's GPU context (created on first use). */
export function gpu(): Promise<GpuContext> {
  ctxPromise ??= GpuContext.create();
  return ctxPromise;
}

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n values, roughly normal (sum of uniforms), times `scale`. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() + r() + r() + r() - 2) * 1.7320508 * scale;
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** torch.nn.Conv2d in float64 on channels-last x [B,H,W,Cin], weight [Cout,Cin/g,kh,kw]. */
export function convRef(x: Float32Array, xs: number[], w: Float32Array, ws: number[], bias: Float32Array | undefined,
  stride: number, pad: number, groups: number): { out: Float64Array; shape: number[] } {
  const [B, H, W, Cin] = xs as [number, number, number, number];
  const [Cout, cinG, kh, kw] = ws as [number, number, number, number];
  const coutG = Cout / groups;
  const Ho = Math.floor((H + 2 * pad - kh) / stride) + 1, Wo = Math.floor((W + 2 * pad - kw) / stride) + 1;
  const out = new Float64Array(B * Ho * Wo * Cout);
  for (let b = 0; b < B; b++) for (let oy = 0; oy < Ho; oy++) for (let ox = 0; ox < Wo; ox++) for (let co = 0; co < Cout; co++) {
    let acc = bias ? bias[co]! : 0;
    const g = Math.floor(co / coutG);
    for (let c = 0; c < cinG; c++) for (let ky = 0; ky < kh; ky++) for (let kx = 0; kx < kw; kx++) {
      const iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
      if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
      acc += x[((b * H + iy) * W + ix) * Cin + g * cinG + c]! * w[((co * cinG + c) * kh + ky) * kw + kx]!;
    }
    out[((b * Ho + oy) * Wo + ox) * Cout + co] = acc;
  }
  return { out, shape: [B, Ho, Wo, Cout] };
}

/** A W x H RGBA image of seeded random bytes. */
export function randomImage(W: number, H: number, seed: number): { data: Uint8Array; width: number; height: number; channels: 4 } {
  const r = rng(seed);
  const data = new Uint8Array(W * H * 4);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(r() * 256);
  return { data, width: W, height: H, channels: 4 };
}

/** Component areas (8-connected) of the pixels where `fg`, 0 elsewhere: a sequential union-find. */
export function areasCpu(fg: (i: number) => boolean, h: number, w: number): Int32Array {
  const parent = Int32Array.from({ length: h * w }, (_, i) => i);
  const find = (a: number): number => {
    while (parent[a] !== a) { parent[a] = parent[parent[a]!]!; a = parent[a]!; }
    return a;
  };
  const unite = (a: number, b: number) => { const ra = find(a), rb = find(b); if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb); };
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = y * w + x;
    if (!fg(i)) continue;
    for (const [dy, dx] of [[-1, -1], [-1, 0], [-1, 1], [0, -1]] as const) {
      const yy = y + dy, xx = x + dx;
      if (yy >= 0 && xx >= 0 && xx < w && fg(yy * w + xx)) unite(i, yy * w + xx);
    }
  }
  const count = new Int32Array(h * w);
  for (let i = 0; i < h * w; i++) if (fg(i)) count[find(i)]!++;
  return Int32Array.from({ length: h * w }, (_, i) => (fg(i) ? count[find(i)]! : 0));
}

/** postprocess_masks on planes of low-res logits, before the resize (threshold 0). */
export function postprocessCpu(x: Float32Array, h: number, w: number, maxHole: number, maxSprinkle: number): Float32Array {
  const out = x.slice();
  for (let p = 0; p < x.length / (h * w); p++) {
    const o = p * h * w;
    const holes = areasCpu((i) => x[o + i]! <= 0, h, w);
    const sprinkles = areasCpu((i) => x[o + i]! > 0, h, w); // from the input, as the official code
    for (let i = 0; i < h * w; i++) {
      if (maxHole > 0 && holes[i]! > 0 && holes[i]! <= maxHole) out[o + i] = 10;
      if (maxSprinkle > 0 && sprinkles[i]! > 0 && sprinkles[i]! <= maxSprinkle) out[o + i] = -10;
    }
  }
  return out;
}

/** The bytes of an rgba8 texture [H, W] (COPY_SRC usage), rows `row` bytes apart (a multiple of 256). */
export async function readTexture(ctx: import('../src/gpu/context.js').GpuContext, tex: GPUTexture): Promise<{ px: Uint8Array; row: number }> {
  const W = tex.width, H = tex.height;
  const row = Math.ceil((W * 4) / 256) * 256;
  const buf = ctx.device.createBuffer({ size: row * H, usage: 0x0001 /* MAP_READ */ | 0x0008 /* COPY_DST */ });
  const enc = ctx.device.createCommandEncoder();
  enc.copyTextureToBuffer({ texture: tex }, { buffer: buf, bytesPerRow: row }, [W, H]);
  ctx.device.queue.submit([enc.finish()]);
  await buf.mapAsync(1);
  const px = new Uint8Array(buf.getMappedRange().slice(0));
  buf.destroy();
  return { px, row };
}

/** The error `f` throws (a test fails when it throws none). */
export function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

/**
 * The ```ts code blocks of README.md's section `heading` (e.g. '## Using it'), in order: tests run
 * and compile them as they are written there, so the README cannot drift from the code.
 */
export async function readmeBlocks(heading: string): Promise<string[]> {
  const { readFileSync } = await import('node:fs');
  const text = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const start = text.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`README.md has no section '${heading}'`);
  const level = heading.split(' ')[0]!;
  const rest = text.slice(start + heading.length + 2);
  const end = rest.search(new RegExp(`\\n${level} `));
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** Frame i of a generated 96x64 RGB video: a textured background and a disc moving across it. */
export function movingDiscFrame(i: number): ImageSource {
  const W = 96, H = 64;
  const data = new Uint8Array(W * H * 3);
  const cx = 20 + 50 * (0.5 + 0.5 * Math.sin(i / 15)), cy = 32 + 12 * Math.cos(i / 11);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const o = (y * W + x) * 3;
    const inside = (x - cx) ** 2 + (y - cy) ** 2 < 14 ** 2;
    data[o] = inside ? 230 : (x * 7 + y * 3 + i) & 127;
    data[o + 1] = inside ? 40 : (x * 2 + y * 5) & 127;
    data[o + 2] = inside ? 60 : 90;
  }
  return { data, width: W, height: H, channels: 3 };
}

/** Runs the command line in this process; returns the exit code and what it printed. */
export async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const o = { stdout: '', stderr: '' };
  const out: Output = { print: (l) => { o.stdout += `${l}\n`; }, note: (l) => { o.stderr += `${l}\n`; } };
  const { runCli } = await import('../src/cli/main.js'); // only the CLI tests load the CLI
  const code = await runCli(argv, out);
  return { code, ...o };
}
