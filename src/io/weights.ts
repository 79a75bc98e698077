/**
 * Loading a model's weights by name while the model is being built.
 *
 * The model code declares each tensor it needs, with the shape it expects, as it constructs its
 * layers:
 *
 *   const w = new WeightLoader(file, ctx);
 *   const trunk = w.scope('image_encoder.trunk.');
 *   const qkv = trunk.tensor('blocks.0.attn.qkv.weight', [576, 192]);   // Tensor on the GPU
 *   ...
 *   w.finish();   // throws one WeightError listing every missing, mis-shaped and unused tensor
 *
 * A missing or mis-shaped tensor does not throw at once: `tensor` returns a placeholder of the
 * expected shape (never to be dispatched) so that construction runs to the end and `finish`
 * can report all problems together. Each weight is uploaded once, when it is taken, and taking the
 * same name again returns the same tensor. Weights are uploaded as f32 (F16/BF16 files are widened
 * on the CPU), except that a consumer whose kernel reads f16 (Linear and Conv2d weights: see
 * `tensor`'s `allowF16`) gets an F16 file's tensor as it is stored, f16 on the GPU — half the
 * memory — when the device has shader-f16 (option `keepF16`).
 *
 * A weight must be a floating-point tensor (F32, F16, BF16 or F64; an integer or bool tensor is
 * reported by `finish` like a mis-shaped one) and finite. Each uploaded weight is checked on the
 * GPU as it is uploaded (kernels/finite.ts sets one flag per tensor); `checkValues()` reads all
 * the flags back at once, after the load, and names the first tensor holding a NaN or an
 * infinity (values of an F64 file beyond the f32 range become infinities when widened, so they
 * are caught too). Weights taken on the CPU (`cpu`) are checked there.
 */
import type { GpuContext } from '../gpu/context.js';
import { f32ToF16Array } from '../gpu/half.js';
import { Tensor } from '../gpu/tensor.js';
import { flagNotFinite } from '../kernels/finite.js';
import type { SafetensorsFile } from './safetensors.js';

/** An expected shape; -1 accepts any size on that axis. */
export type ShapeSpec = readonly number[];

export interface MisShaped {
  name: string;
  expected: number[];
  found: number[];
}

/** A weight stored as integers or bools, where the model needs floating-point values. */
export interface WrongDType {
  name: string;
  dtype: string;
}

/** The dtypes a weight may have in the file (widened to f32, or kept f16). */
const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

export class WeightError extends Error {
  override name = 'WeightError';
  constructor(
    readonly source: string,
    readonly missing: string[],
    readonly misShaped: MisShaped[],
    readonly unused: string[],
    readonly wrongDType: WrongDType[] = [],
  ) {
    super(WeightError.describe(source, missing, misShaped, unused, wrongDType));
  }

  private static describe(source: string, missing: string[], misShaped: MisShaped[], unused: string[], wrongDType: WrongDType[]): string {
    const parts: string[] = [];
    const fmt = (s: readonly number[]) => `[${s.map((d) => (d < 0 ? '*' : d)).join(', ')}]`;
    if (missing.length) parts.push(`${missing.length} missing:\n${missing.map((n) => `  ${n}`).join('\n')}`);
    if (misShaped.length) {
      parts.push(`${misShaped.length} with the wrong shape:\n` +
        misShaped.map((m) => `  ${m.name}: expected ${fmt(m.expected)}, found ${fmt(m.found)}`).join('\n'));
    }
    if (wrongDType.length) {
      parts.push(`${wrongDType.length} stored as integers or bools, where the model needs floating-point values (F32, F16, BF16 or F64):\n` +
        wrongDType.map((w) => `  ${w.name}: ${w.dtype}`).join('\n'));
    }
    if (unused.length) parts.push(`${unused.length} not used by the model:\n${unused.map((n) => `  ${n}`).join('\n')}`);
    return `weights from ${source} do not fit the model:\n${parts.join('\n')}`;
  }
}

/** Weights holding NaN or infinite values (a damaged file, or values beyond the f32 range). */
export class WeightValueError extends Error {
  override name = 'WeightValueError';
  constructor(
    readonly source: string,
    /** The tensors holding NaN or infinities, in the order they were loaded. */
    readonly tensors: string[],
  ) {
    super(`weights from ${source}: tensor "${tensors[0]}" holds NaN or infinite values` +
      (tensors.length > 1 ? ` (and ${tensors.length - 1} more: ${tensors.slice(1, 6).join(', ')}${tensors.length > 6 ? ', ...' : ''})` : '') +
      ': the file is damaged, or holds values beyond the float32 range');
  }
}

export interface WeightLoaderOptions {
  /** Prepended to every name given to `tensor`/`cpu`/`has` (and limits the unused check to it). */
  prefix?: string;
  /**
   * Tensors in the file that the model does not take: `false` (default) makes them an error in
   * `finish`; `true` allows all of them; a list allows those named, where an entry ending in
   * '.' or '*' allows every name starting with it (the '*' removed). Names are full names.
   */
  allowUnused?: boolean | readonly string[];
  /** Called by `finish` with a message listing unused tensors that were allowed by `allowUnused: true`. */
  warn?: (message: string) => void;
  /**
   * Keep F16 tensors as f16 on the GPU where the consumer allows it (`tensor(..., { allowF16: true })`,
   * i.e. Linear and Conv2d weights). Default: true when the device has shader-f16. Setting it on a
   * device without shader-f16 is an error.
   */
  keepF16?: boolean;
  /**
   * precision 'f16': which tensors taken with `allowF16` are uploaded as f16 (F32 files rounded on
   * the CPU); the others are uploaded as f32 (an F16 file's widened), so their layers compute in
   * f32. Given the tensor's full name. Needs shader-f16. Default: none (the `keepF16` rule).
   */
  f16?: (name: string) => boolean;
  /** Check each uploaded weight for NaN and infinities on the GPU (default true; see `checkValues`). */
  checkValues?: boolean;
}

/** Per-tensor options of `WeightLoader.tensor`. */
export interface TensorOptions {
  /**
   * The consumer's kernel reads this tensor as f16 or f32 (linear, conv2d): an F16 tensor of 2
   * or more dimensions stays f16 on the GPU when the loader keeps F16 (see `keepF16`).
   */
  allowF16?: boolean;
}

/** Shared state of a loader and its scopes. */
interface LoaderState {
  file: SafetensorsFile;
  ctx: GpuContext | null;
  opts: WeightLoaderOptions;
  taken: Set<string>;
  gpu: Map<string, Tensor>;
  missing: Set<string>;
  misShaped: Map<string, MisShaped>;
  placeholder: GPUBuffer | null;
  uploadedBytes: number;
  wrongDType: Map<string, string>;
  /** one u32 flag per tensor of the file (by its index in `names()`), set on the GPU when it is not finite */
  flags: GPUBuffer | null;
  flagIndex: Map<string, number> | null;
  /** every tensor checked so far, in load order, with its flag or (CPU tensors) its finding */
  checked: { name: string; flag: number; bad?: boolean }[];
  /** the check kernel's parameter buffers, freed with the flags */
  params: GPUBuffer[];
}

export class WeightLoader {
  private readonly s: LoaderState;
  /** The prefix of this loader (the root's `opts.prefix` plus every `scope`). */
  readonly prefix: string;

  /** `ctx` may be null when only `cpu` is used (e.g. CPU-side tests or converters). */
  constructor(file: SafetensorsFile, ctx: GpuContext | null, opts?: WeightLoaderOptions);
  /** @internal a scope sharing `state` */
  constructor(state: LoaderState, prefix: string);
  constructor(a: SafetensorsFile | LoaderState, b: GpuContext | null | string, opts: WeightLoaderOptions = {}) {
    if (typeof b === 'string') {
      this.s = a as LoaderState;
      this.prefix = b;
    } else {
      this.s = {
        file: a as SafetensorsFile, ctx: b, opts, taken: new Set(), gpu: new Map(), missing: new Set(),
        misShaped: new Map(), placeholder: null, uploadedBytes: 0, wrongDType: new Map(), flags: null, flagIndex: null,
        checked: [], params: [],
      };
      this.prefix = opts.prefix ?? '';
      if ((opts.keepF16 || opts.f16) && b && !b.hasF16) {
        throw new Error(`WeightLoader: ${opts.f16 ? 'precision f16' : 'keepF16'} needs a device with the shader-f16 feature, and this one has none`);
      }
    }
  }

  /** Whether F16 tensors taken with `allowF16` stay f16 on the GPU. */
  get keepsF16(): boolean {
    return !!this.s.ctx?.hasF16 && (this.s.opts.keepF16 ?? true);
  }

  /** A loader for names under `prefix` (relative to this one); it shares this loader's bookkeeping. */
  scope(prefix: string): WeightLoader {
    return new WeightLoader(this.s, this.prefix + prefix);
  }

  /** The file's dtype for this name, or undefined when absent. */
  dtype(name: string): string | undefined {
    const full = this.prefix + name;
    return this.s.file.has(full) ? this.s.file.info(full).dtype : undefined;
  }

  /** Whether the file holds this tensor (does not mark it as taken). */
  has(name: string): boolean {
    return this.s.file.has(this.prefix + name);
  }

  /** Total bytes uploaded to the GPU by this loader so far. */
  get uploadedBytes(): number {
    return this.s.uploadedBytes;
  }

  /** Names (full) taken so far. */
  get takenNames(): string[] {
    return [...this.s.taken];
  }

  /**
   * Checks a name and shape; records a problem and returns null if it is missing or mis-shaped.
   * `shape` may use -1 for "any size"; the found shape is returned.
   */
  private check(name: string, shape: ShapeSpec): number[] | null {
    const full = this.prefix + name;
    this.s.taken.add(full);
    if (!this.s.file.has(full)) {
      this.s.missing.add(full);
      return null;
    }
    const { shape: found, dtype } = this.s.file.info(full);
    const ok = found.length === shape.length && shape.every((d, i) => d < 0 || d === found[i]);
    if (!ok) {
      this.s.misShaped.set(full, { name: full, expected: [...shape], found: [...found] });
      return null;
    }
    if (!FLOAT_DTYPES.has(dtype)) {
      this.s.wrongDType.set(full, dtype);
      return null;
    }
    return found;
  }

  /** The flag of this tensor in the flags buffer (made on the first call). */
  private flagOf(full: string, ctx: GpuContext): { flags: GPUBuffer; flag: number } {
    if (!this.s.flags) {
      const names = this.s.file.names();
      this.s.flagIndex = new Map(names.map((n, i) => [n, i]));
      const STORAGE = 0x0080, COPY_SRC = 0x0004;
      this.s.flags = ctx.device.createBuffer({ size: Math.max(16, Math.ceil(names.length / 4) * 16), usage: STORAGE | COPY_SRC });
    }
    return { flags: this.s.flags, flag: this.s.flagIndex!.get(full)! };
  }

  /**
   * The tensor as f32 on the CPU, checked against `shape` (its elements in the file's row-major
   * order). Returns zeros of the expected shape (with -1 taken as 1) when missing or mis-shaped.
   */
  cpu(name: string, shape: ShapeSpec): Float32Array {
    const found = this.check(name, shape);
    if (!found) return new Float32Array(shape.reduce((a, d) => a * Math.max(d, 1), 1));
    const data = this.s.file.getF32(this.prefix + name);
    if (this.s.opts.checkValues ?? true) {
      let bad = false;
      for (let i = 0; i < data.length && !bad; i++) bad = !Number.isFinite(data[i]!);
      this.s.checked.push({ name: this.prefix + name, flag: -1, bad });
    }
    return data;
  }

  /**
   * The tensor as f32 on the GPU, uploaded now (once per name), checked against `shape`. When
   * missing or mis-shaped, a placeholder of the expected shape is returned: its buffer is a
   * shared 16-byte one, so it must never be dispatched — `finish` throws before that can happen.
   */
  tensor(name: string, shape: ShapeSpec, opts: TensorOptions = {}): Tensor {
    const ctx = this.s.ctx;
    if (!ctx) throw new Error(`WeightLoader.tensor("${this.prefix + name}"): this loader has no GPU context`);
    const full = this.prefix + name;
    const found = this.check(name, shape);
    if (!found) {
      this.s.placeholder ??= ctx.allocBuffer(16);
      return new Tensor(ctx, this.s.placeholder, shape.map((d) => Math.max(d, 1)), 'f32', false);
    }
    const policy = this.s.opts.f16;
    const stored = this.s.file.info(full).dtype;
    const f16 = !!opts.allowF16 && found.length >= 2 && (policy ? policy(full) : this.keepsF16 && stored === 'F16');
    const key = f16 ? `${full}\u0000f16` : full;
    let t = this.s.gpu.get(key);
    if (!t) {
      t = !f16
        ? ctx.upload(this.s.file.getF32(full), found)
        : stored === 'F16'
          ? ctx.upload(this.s.file.getRaw(full) as Uint16Array, found, 'f16')
          : ctx.upload(f32ToF16Array(this.s.file.getF32(full)), found, 'f16');
      this.s.gpu.set(key, t);
      this.s.uploadedBytes += t.byteLength;
      if (this.s.opts.checkValues ?? true) {
        const { flags, flag } = this.flagOf(full, ctx);
        const params = flagNotFinite(ctx, t, flags, flag);
        if (params) this.s.params.push(params);
        this.s.checked.push({ name: full, flag });
      }
    }
    return t;
  }

  /** Like `tensor`, but returns null without complaint when the file does not hold the name. */
  optionalTensor(name: string, shape: ShapeSpec, opts: TensorOptions = {}): Tensor | null {
    return this.has(name) ? this.tensor(name, shape, opts) : null;
  }

  /** Marks names as used without loading them (e.g. buffers the model recomputes). */
  skip(...names: string[]): void {
    for (const n of names) this.s.taken.add(this.prefix + n);
  }

  /** Tensors in the file (under the root prefix) that have not been taken so far. */
  unused(): string[] {
    const root = this.s.opts.prefix ?? '';
    return this.s.file.names().filter((n) => n.startsWith(root) && !this.s.taken.has(n));
  }

  /**
   * Ends construction: throws one WeightError listing every missing tensor, every mis-shaped one
   * (expected vs found), and the unused ones that `allowUnused` does not allow. Returns the unused
   * names otherwise. Call it on the root loader (a scope's call checks the same shared state).
   */
  finish(): { unused: string[] } {
    const { opts } = this.s;
    const unused = this.unused();
    const allow = opts.allowUnused ?? false;
    let bad: string[];
    if (allow === true) bad = [];
    else if (allow === false) bad = unused;
    else {
      const exact = new Set(allow.filter((a) => !a.endsWith('.') && !a.endsWith('*')));
      const prefixes = allow.filter((a) => a.endsWith('.') || a.endsWith('*')).map((a) => a.replace(/\*$/, ''));
      bad = unused.filter((n) => !exact.has(n) && !prefixes.some((p) => n.startsWith(p)));
    }
    const missing = [...this.s.missing];
    const misShaped = [...this.s.misShaped.values()];
    const wrongDType = [...this.s.wrongDType].map(([name, dtype]) => ({ name, dtype }));
    if (missing.length || misShaped.length || bad.length || wrongDType.length) {
      throw new WeightError(this.s.file.source, missing, misShaped, bad, wrongDType);
    }
    if (allow === true && unused.length && opts.warn) {
      opts.warn(`${unused.length} tensors in ${this.s.file.source} are not used by the model:\n` +
        unused.map((n) => `  ${n}`).join('\n'));
    }
    return { unused };
  }

  /**
   * Reads back the flags of every weight uploaded so far (one readback for all of them) and
   * throws a WeightValueError naming those holding NaN or infinities, in load order. The flags
   * buffer is freed; later uploads get a new one.
   */
  async checkValues(): Promise<void> {
    const { ctx, checked, flags, params } = this.s;
    this.s.flags = null;
    this.s.params = [];
    this.s.checked = [];
    let bits: Uint32Array | null = null;
    if (flags && ctx) {
      try {
        const f = await ctx.read(new Tensor(ctx, flags, [flags.size / 4], 'f32', false));
        bits = new Uint32Array(f.buffer, f.byteOffset, f.length);
      } finally {
        flags.destroy();
        for (const b of params) b.destroy();
      }
    }
    const bad = checked.filter((c) => (c.flag < 0 ? c.bad : bits![c.flag] !== 0)).map((c) => c.name);
    if (bad.length) throw new WeightValueError(this.s.file.source, [...new Set(bad)]);
  }

  /** Releases every uploaded weight to the pool, and drops the pending value check. */
  release(): void {
    for (const t of this.s.gpu.values()) t.release();
    this.s.gpu.clear();
    this.discardChecks();
  }

  /** Frees what the value check holds on the GPU (its flags and parameters), without reading it. */
  discardChecks(): void {
    if (this.s.flags) this.s.ctx?.flush(); // the checks recorded so far are submitted before their buffers go
    this.s.flags?.destroy();
    this.s.flags = null;
    for (const b of this.s.params) b.destroy();
    this.s.params = [];
    this.s.checked = [];
  }
}
