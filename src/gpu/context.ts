import { requestDevice, type DeviceOptions } from './device.js';
import { Tensor, bytesPerElement, numel, type DType } from './tensor.js';
import { f16ToF32Array } from './half.js';
import { adapterIdentity, type AdapterIdentity } from './adapter.js';
import { KernelChoices } from './kernel_choices.js';

/** Thrown for any use of a context whose device has been lost; the message gives Dawn's reason. */
export class DeviceLostError extends Error {
  override name = 'DeviceLostError';
}

export type GpuErrorKind = 'validation' | 'out-of-memory' | 'internal';

/**
 * The GPU refused the work of a library call (a WebGPU validation error, running out of GPU
 * memory, or an internal error). The message names the operation and its sizes; the work of that
 * call was discarded, what it allocated was freed, and the context stays usable.
 */
export class GpuError extends Error {
  override name = 'GpuError';
  constructor(
    /** the library call and its sizes, e.g. "ImagePredictor.predict (4000x3000 image, 1 object x 3 masks)" */
    readonly operation: string,
    readonly kind: GpuErrorKind,
    /** the implementation's own message, in full */
    readonly gpuMessage: string,
  ) {
    const what = kind === 'out-of-memory' ? 'ran out of memory' : `refused the work (${kind} error)`;
    const lines = gpuMessage.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
    super(`${operation}: the GPU ${what}: ${lines.slice(0, 2).join(' ')}`);
  }
}

/** Counters of what the context has done, for tests and benchmarks (e.g. "no compile per frame"). */
export interface GpuStats {
  pipelinesCompiled: number;
  dispatches: number;
  submits: number;
  uploads: number;
  uploadBytes: number;
  readbacks: number;
  buffersCreated: number;
  bytesCreated: number;
}

const STORAGE_USAGE = GPUBufferUsageFlags();
function GPUBufferUsageFlags(): number {
  // GPUBufferUsage is a global only once a WebGPU implementation is loaded; use the spec's values.
  const STORAGE = 0x0080, COPY_SRC = 0x0004, COPY_DST = 0x0008;
  return STORAGE | COPY_SRC | COPY_DST;
}
const MAP_READ = 0x0001;
/** What `pipeline` returns while tracing: never dispatched (`run` records nothing then). */
const TRACED_PIPELINE = Object.freeze({ label: 'traced' }) as unknown as GPUComputePipeline;
const COPY_DST = 0x0008;
const MiB = 1 << 20;

/** What one error scope of `guard` collected: what was made under it, to be dropped if the GPU refused the work. */
interface ScopeState {
  buffers: GPUBuffer[];
  uniforms: string[];
  /** the verdicts on pipelines compiled under the scope (each has its own error scope) */
  compiles: Promise<GPUError | null>[];
}

/** The buffers a piece of work took from a context (see `GpuContext.beginAllocations`). */
export interface Allocations {
  /** made by allocBuffer */
  created: Set<GPUBuffer>;
  /** taken from the pool */
  taken: Set<GPUBuffer>;
  /** of those, the ones still out of the pool when the noting ended */
  held: Set<GPUBuffer>;
}

/** One compute dispatch: a kernel's pipeline, its storage buffers in binding order, the grid. */
export interface Dispatch {
  pipeline: GPUComputePipeline;
  /** Bound as @group(0) @binding(i) in this order. */
  bindings: readonly (Tensor | GPUBuffer)[];
  workgroups: readonly [number, number?, number?];
}

/**
 * The GPU side of the library: one device, the pipeline cache, the buffer pool, and one open
 * command encoder that collects dispatches until something needs the results on the CPU.
 *
 * Kernels are WGSL generated from their parameters (sizes are compiled in as constants, or passed
 * as uniforms where they follow the input), so a pipeline is keyed by its WGSL text: the first
 * frame compiles, later frames hit the cache.
 *
 * Sizes. A storage binding holds at most `maxStorageBufferBindingSize` bytes (128 MiB on most
 * devices); kernels whose buffers grow with the user's image (full-resolution masks, the source
 * pixels) work in tiles of at most `tileBytes` (mask_upsample.ts, preprocess.ts).
 *
 * Memory. Freed tensors' buffers wait in a pool for a later tensor of the same size class; sizes
 * of 1 MiB and more are rounded up to 8 classes per doubling, so images of nearby sizes share
 * buffers, and the pool keeps a bounded number of bytes of free buffers (`poolLimit`; the oldest
 * freed go first), so distinct sizes cannot grow GPU memory without bound.
 *
 * Errors. Library calls record their GPU work under `guard`: a validation error, running out of
 * memory or an internal error of the GPU becomes a GpuError naming the call and its sizes, with
 * the call's work discarded, what it allocated freed, and the context usable for the next call.
 */
export class GpuContext {
  readonly stats: GpuStats = {
    pipelinesCompiled: 0, dispatches: 0, submits: 0, uploads: 0, uploadBytes: 0, readbacks: 0,
    buffersCreated: 0, bytesCreated: 0,
  };
  readonly hasF16: boolean;
  readonly hasSubgroups: boolean;
  /** The adapter behind the device (what kernel choices are keyed by). */
  readonly adapter: AdapterIdentity;
  /** Which candidate kernel serves each tuned operation, and f16 settings (see kernel_choices.ts). */
  readonly kernels = new KernelChoices();
  /** The device's largest storage binding, in bytes (a multiple of 16). */
  readonly maxBindingBytes: number;
  /**
   * Largest buffer a tiled kernel binds (full-resolution masks, source pixels), in bytes: at most
   * the binding limit, 64 MiB by default (tiles beyond that only cost memory). Tests lower it to
   * run the tiled paths on small images.
   */
  tileBytes: number;
  /**
   * Most bytes of free buffers the pool keeps; the oldest freed are destroyed past it. By default
   * (null) the larger of 256 MiB and the most bytes ever in use at once: a model's working set
   * stays pooled from frame to frame, while buffers of sizes no longer asked for (other images'
   * sizes) go, so held memory stays within about twice the peak in use.
   */
  poolLimit: number | null = null;
  /** the most bytes in use (held, not pooled) so far */
  private peakInUse = 0;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  /** free buffers by size; `freed` keeps them in the order they were freed (oldest first) */
  private readonly pool = new Map<number, GPUBuffer[]>();
  private readonly freed = new Set<GPUBuffer>();
  private pooled = 0;
  /** buffers dropped while recorded work may still use them: destroyed once that work is submitted */
  private doomed: GPUBuffer[] = [];
  /** buffers made by a call the GPU refused: destroyed instead of pooled when freed */
  private readonly poisoned = new WeakSet<GPUBuffer>();
  private readonly uniforms = new Map<string, GPUBuffer>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private lostReason: string | null = null;
  private uncaptured: GPUError | null = null;
  /** a refusal of a call that could not wait for it (reportLater), thrown by the next call */
  private refused: GpuError | null = null;
  private scope: ScopeState | null = null;
  /** Bytes held by the buffers this context keeps: tensors' (pooled ones included) and uniforms'. */
  bytesHeld = 0;

  constructor(readonly device: GPUDevice) {
    this.hasF16 = device.features.has('shader-f16');
    this.hasSubgroups = device.features.has('subgroups');
    this.adapter = adapterIdentity(device);
    this.maxBindingBytes = Math.floor(device.limits.maxStorageBufferBindingSize / 16) * 16;
    this.tileBytes = Math.min(this.maxBindingBytes, 64 * MiB);
    device.lost.then((info) => {
      this.lostReason = `${info.reason}: ${info.message}`;
    });
    device.addEventListener('uncapturederror', (ev) => {
      this.uncaptured ??= (ev as GPUUncapturedErrorEvent).error;
    });
  }

  static async create(opts: DeviceOptions = {}): Promise<GpuContext> {
    return new GpuContext(await requestDevice(opts));
  }

  get isLost(): boolean {
    return this.lostReason !== null;
  }

  private check(): void {
    if (this.lostReason !== null) throw new DeviceLostError(`The GPU device was lost (${this.lostReason}).`);
    if (this.refused !== null) {
      const err = this.refused;
      this.refused = null;
      throw err;
    }
    if (this.uncaptured !== null) {
      // work recorded outside any library call (e.g. a kernel called directly) that the GPU refused
      const err = this.uncaptured;
      this.uncaptured = null;
      throw new GpuError('GPU work recorded outside a library call', errorKind(err), err.message);
    }
  }

  // ---------------------------------------------------------------- pipelines

  /**
   * The compute pipeline for this WGSL (entry point `main`), compiled once and cached by its text.
   * A pipeline the GPU refuses is taken out of the cache again (its own error scope says so; the
   * refusal itself goes to the call's scope), so it is not reused.
   */
  pipeline(label: string, wgsl: string): GPUComputePipeline {
    let p = this.pipelines.get(wgsl);
    if (!p) {
      if (this.traced) {
        // tracing: note what would be compiled, compile nothing
        if (!this.traced.has(wgsl)) this.traced.set(wgsl, label);
        return TRACED_PIPELINE;
      }
      this.check();
      this.device.pushErrorScope('validation');
      const module = this.device.createShaderModule({ label, code: wgsl });
      const made = this.device.createComputePipeline({ label, layout: 'auto', compute: { module, entryPoint: 'main' } });
      const scope = this.scope;
      const verdict = this.device.popErrorScope().then((err) => {
        if (err) {
          if (this.pipelines.get(wgsl) === made) this.pipelines.delete(wgsl);
          if (!scope) this.uncaptured ??= err; // unguarded: the next call reports it
        }
        return err;
      }, () => null);
      scope?.compiles.push(verdict);
      p = made;
      this.pipelines.set(wgsl, p);
      this.stats.pipelinesCompiled++;
    }
    return p;
  }

  /** Whether this WGSL's pipeline is compiled (by `pipeline` or `compile`). */
  hasPipeline(wgsl: string): boolean {
    return this.pipelines.has(wgsl);
  }

  /**
   * Compiles pipelines with createComputePipelineAsync, all at once, so that the `pipeline` calls
   * of later dispatches find them ready: in a page, compiling at load this way does not block the
   * main thread, and the first frame compiles nothing. Already compiled ones are skipped.
   * `onProgress(done, total)` after each.
   */
  async compile(list: readonly { label: string; wgsl: string }[], onProgress?: (done: number, total: number) => void): Promise<void> {
    this.check();
    const todo = list.filter((x, i) => !this.pipelines.has(x.wgsl) && list.findIndex((y) => y.wgsl === x.wgsl) === i);
    let done = 0;
    await Promise.all(todo.map(async ({ label, wgsl }) => {
      const module = this.device.createShaderModule({ label, code: wgsl });
      const p = await this.device.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint: 'main' } });
      if (!this.pipelines.has(wgsl)) {
        this.pipelines.set(wgsl, p);
        this.stats.pipelinesCompiled++;
      }
      onProgress?.(++done, todo.length);
    }));
    this.check();
  }

  /** While tracing: WGSL -> label of every pipeline asked for; null otherwise. */
  private traced: Map<string, string> | null = null;

  /**
   * Runs `fn` as a dry run: kernels choose their candidates (the kernel table's recorder sees every
   * tuned call) and generate their WGSL, but nothing is compiled, recorded or submitted. Returns
   * the pipelines `fn` would have compiled (those not compiled yet), for `compile`. Buffers are
   * taken from the pool as usual; `fn` must not read anything back.
   */
  trace(fn: () => void): { label: string; wgsl: string }[] {
    this.check();
    this.flush();
    if (this.traced) throw new Error('GpuContext.trace: already tracing');
    const traced = new Map<string, string>();
    this.traced = traced;
    try {
      fn();
    } finally {
      this.traced = null;
    }
    return [...traced].map(([wgsl, label]) => ({ label, wgsl }));
  }

  get isTracing(): boolean {
    return this.traced !== null;
  }

  // ---------------------------------------------------------------- buffers and tensors

  private createBuffer(size: number, usage: number): GPUBuffer {
    this.check();
    const max = this.device.limits.maxBufferSize;
    if (size > max) {
      throw new GpuError(`a GPU buffer of ${size} bytes`, 'validation', `larger than the device's maxBufferSize (${max} bytes)`);
    }
    this.stats.buffersCreated++;
    this.stats.bytesCreated += size;
    const b = this.device.createBuffer({ size, usage });
    this.scope?.buffers.push(b);
    return b;
  }

  private readonly allocationLogs: Allocations[] = [];

  /**
   * Starts noting the storage buffers handed out by `allocBuffer` (made, or taken from the pool),
   * until `endAllocations`: what a model's load took, so that a failed load can give it all back
   * (`freeAllocations`). Meant for synchronous work (a load), which nothing else interleaves with.
   */
  beginAllocations(): Allocations {
    const log: Allocations = { created: new Set(), taken: new Set(), held: new Set() };
    this.allocationLogs.push(log);
    return log;
  }

  /** Stops noting; the buffers still held (not back in the pool) are what the work kept. */
  endAllocations(log: Allocations): void {
    const i = this.allocationLogs.indexOf(log);
    if (i >= 0) this.allocationLogs.splice(i, 1);
    for (const b of [...log.created, ...log.taken]) if (!this.freed.has(b)) log.held.add(b);
  }

  /**
   * Gives back what the noted work kept, once it has failed and nothing uses it: buffers it made
   * are destroyed (those it left in the pool too), buffers it took from the pool go back there.
   * The bytes in use return to what they were before it began.
   */
  freeAllocations(log: Allocations): void {
    if (this.allocationLogs.includes(log)) this.endAllocations(log);
    this.flush();
    for (const b of log.created) {
      if (this.freed.has(b)) {
        this.takeFromPool(b);
        this.retire(b);
      } else if (log.held.has(b)) {
        this.retire(b);
      }
    }
    for (const b of log.taken) if (log.held.has(b)) this.recycle(b);
    log.created.clear();
    log.taken.clear();
    log.held.clear();
  }

  /**
   * The size class of a request: a multiple of 16 bytes; from 1 MiB up, rounded up to 8 classes
   * per doubling (at most 12.5% more), but never past the binding limit when the request fits it.
   */
  sizeClass(bytes: number): number {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (size < MiB) return size;
    const step = 2 ** (Math.floor(Math.log2(size)) - 3);
    const rounded = Math.ceil(size / step) * step;
    return rounded > this.maxBindingBytes && size <= this.maxBindingBytes ? size : rounded;
  }

  /**
   * A storage buffer of at least `bytes` bytes, from the pool when a free one of its size class is
   * there (`exact`: of exactly that size, rounded to 16, e.g. for weights that live as long as
   * the model).
   */
  allocBuffer(bytes: number, exact = false): GPUBuffer {
    const size = exact ? Math.max(16, Math.ceil(bytes / 16) * 16) : this.sizeClass(bytes);
    const list = this.pool.get(size);
    let b: GPUBuffer;
    if (list && list.length > 0) {
      b = list.pop()!;
      this.freed.delete(b);
      this.pooled -= size;
      for (const log of this.allocationLogs) log.taken.add(b);
    } else {
      b = this.createBuffer(size, STORAGE_USAGE);
      this.bytesHeld += size;
      for (const log of this.allocationLogs) log.created.add(b);
    }
    this.peakInUse = Math.max(this.peakInUse, this.bytesHeld - this.pooled);
    return b;
  }

  /** The pool's limit in effect (see poolLimit). */
  get poolBytesLimit(): number {
    return this.poolLimit ?? Math.max(256 * MiB, this.peakInUse);
  }

  /**
   * A uniform buffer holding these 32-bit words, made once per distinct content and kept (the
   * most recently used few thousand): kernels whose sizes are uniforms share one pipeline across
   * shapes, and a model's shapes repeat every frame, so nothing is allocated or uploaded per frame.
   */
  uniform(words: Uint32Array): GPUBuffer {
    const key = words.join(',');
    let b = this.uniforms.get(key);
    if (b) {
      // most recently used last: the oldest go first past UNIFORMS_KEPT (sizes of past images)
      this.uniforms.delete(key);
      this.uniforms.set(key, b);
    } else {
      for (const [k, old] of this.uniforms) {
        if (this.uniforms.size < GpuContext.UNIFORMS_KEPT) break;
        this.uniforms.delete(k);
        this.retire(old);
      }
      const UNIFORM = 0x0040;
      b = this.createBuffer(Math.max(16, Math.ceil(words.byteLength / 16) * 16), UNIFORM | COPY_DST);
      this.bytesHeld += b.size;
      this.device.queue.writeBuffer(b, 0, words as Uint32Array<ArrayBuffer>);
      this.uniforms.set(key, b);
      this.scope?.uniforms.push(key);
    }
    return b;
  }

  /** Gives a buffer back to the pool (GPU work already recorded with it stays valid). */
  recycle(buffer: GPUBuffer): void {
    if (this.poisoned.has(buffer)) {
      this.retire(buffer);
      return;
    }
    const list = this.pool.get(buffer.size);
    if (list) list.push(buffer);
    else this.pool.set(buffer.size, [buffer]);
    this.freed.add(buffer);
    this.pooled += buffer.size;
    if (this.pooled > this.poolBytesLimit) this.evict(this.poolBytesLimit);
  }

  /** Bytes of the free buffers waiting in the pool (`bytesHeld - bytesPooled` are in use). */
  get bytesPooled(): number {
    return this.pooled;
  }

  /** Destroys free buffers, the oldest freed first, until the pool holds at most `limit` bytes. */
  private evict(limit: number): void {
    for (const b of this.freed) {
      if (this.pooled <= limit) break;
      this.takeFromPool(b);
      this.retire(b);
    }
  }

  private takeFromPool(b: GPUBuffer): void {
    const list = this.pool.get(b.size)!;
    list.splice(list.indexOf(b), 1);
    this.freed.delete(b);
    this.pooled -= b.size;
  }

  /** Stops holding a buffer: destroyed now, or once the recorded work that may use it is submitted. */
  private retire(b: GPUBuffer): void {
    this.bytesHeld -= b.size;
    if (this.encoder) this.doomed.push(b);
    else b.destroy();
  }

  /** Destroys the pooled (free) buffers (the pool also trims itself past `poolLimit`). */
  trimPool(): void {
    this.evict(0);
    this.flush();
  }

  /** An uninitialised tensor (contents are whatever the pooled buffer held). */
  empty(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    return new Tensor(this, this.allocBuffer(numel(shape) * bytesPerElement(dtype)), shape, dtype);
  }

  /** Copies CPU data into a new tensor (of its exact size). f16 data is given as its raw 16-bit words. */
  upload(data: Float32Array | Uint16Array, shape: readonly number[], dtype: DType = data instanceof Uint16Array ? 'f16' : 'f32'): Tensor {
    if (data.length !== numel(shape)) throw new Error(`upload: ${data.length} values for shape [${shape}]`);
    if ((dtype === 'f16') !== (data instanceof Uint16Array)) throw new Error(`upload: ${dtype} needs ${dtype === 'f16' ? 'Uint16Array' : 'Float32Array'} data`);
    const t = new Tensor(this, this.allocBuffer(numel(shape) * bytesPerElement(dtype), true), shape, dtype);
    this.write(t, data);
    return t;
  }

  /** Overwrites a tensor's contents (from byte `offset`) from the CPU (ordered before work submitted later). */
  write(t: Tensor | GPUBuffer, data: ArrayBufferView, offset = 0): void {
    this.check();
    // writeBuffer needs a multiple of 4 bytes
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    // Work recorded earlier must run before this write lands.
    this.flush();
    this.device.queue.writeBuffer(t instanceof Tensor ? t.buffer : t, offset, bytes as Uint8Array<ArrayBuffer>);
    this.stats.uploads++;
    this.stats.uploadBytes += bytes.byteLength;
  }

  // ---------------------------------------------------------------- recording and submitting

  /** Records one dispatch into the open command encoder (nothing runs until `flush`). */
  run(d: Dispatch): void {
    this.check();
    if (this.traced) return;
    const bindGroup = this.bindGroup(d.pipeline, d.bindings);
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (!this.pass) this.pass = this.beginPass(this.encoder);
    this.pass.setPipeline(d.pipeline);
    this.pass.setBindGroup(0, bindGroup);
    const [x, y = 1, z = 1] = d.workgroups;
    this.pass.dispatchWorkgroups(x, y, z);
    this.stats.dispatches++;
  }

  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private readonly bindGroups = new WeakMap<GPUComputePipeline, Map<string, GPUBindGroup>>();
  private static readonly BIND_GROUPS_PER_PIPELINE = 256;
  /** uniform buffers kept (a model's shapes need a few hundred) */
  private static readonly UNIFORMS_KEPT = 4096;

  /**
   * The bind group of these buffers for this pipeline. Tensors come from the buffer pool, so a
   * model's frames bind the same buffers frame after frame: bind groups are kept (up to a few
   * hundred per pipeline, then that pipeline's are dropped) instead of made per dispatch.
   */
  private bindGroup(pipeline: GPUComputePipeline, bindings: readonly (Tensor | GPUBuffer)[]): GPUBindGroup {
    const buffers = bindings.map((b) => (b instanceof Tensor ? b.buffer : b));
    let key = '';
    for (const b of buffers) {
      let id = this.bufferIds.get(b);
      if (id === undefined) { id = this.nextBufferId++; this.bufferIds.set(b, id); }
      key += `${id},`;
    }
    let groups = this.bindGroups.get(pipeline);
    if (!groups) { groups = new Map(); this.bindGroups.set(pipeline, groups); }
    let g = groups.get(key);
    if (!g) {
      for (const b of buffers) {
        // kernels whose buffers grow with the input tile them; this catches any other one before
        // the GPU does (a refused bind group would poison the whole encoder)
        if (b.size > this.maxBindingBytes && b.usage & 0x0080 /* STORAGE */) {
          throw new RangeError(`${pipeline.label}: a buffer of ${b.size} bytes is more than one GPU binding holds (${this.maxBindingBytes} bytes)`);
        }
      }
      if (groups.size >= GpuContext.BIND_GROUPS_PER_PIPELINE) groups.clear();
      g = this.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      groups.set(key, g);
    }
    return g;
  }

  /** Records a buffer-to-buffer copy. */
  copy(src: Tensor | GPUBuffer, dst: Tensor | GPUBuffer, bytes: number, srcOffset = 0, dstOffset = 0): void {
    this.check();
    if (this.traced) return;
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (this.pass) { this.pass.end(); this.pass = null; }
    const s = src instanceof Tensor ? src.buffer : src;
    const t = dst instanceof Tensor ? dst.buffer : dst;
    this.encoder.copyBufferToBuffer(s, srcOffset, t, dstOffset, Math.ceil(bytes / 4) * 4);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (this.encoder) {
      if (this.pass) { this.pass.end(); this.pass = null; }
      const cmd = this.encoder.finish();
      this.encoder = null;
      this.device.queue.submit([cmd]);
      this.stats.submits++;
    }
    // buffers dropped while recorded work used them (destroying them after the submit is safe)
    for (const b of this.doomed) b.destroy();
    this.doomed = [];
  }

  /** Drops the work recorded and not yet submitted (of a call that failed while recording it). */
  private discard(): void {
    if (this.pass) { this.pass.end(); this.pass = null; }
    this.encoder = null;
    for (const b of this.doomed) b.destroy();
    this.doomed = [];
  }

  // ---------------------------------------------------------------- error scopes

  /**
   * Runs `record` (synchronous recording of a library call's GPU work, `op` naming the call and its
   * sizes) under WebGPU error scopes and submits its work. Resolves to its value when the GPU took
   * all of it; otherwise `cleanup(value)` frees what the call made and a GpuError is thrown. A
   * library error thrown by `record` discards the work recorded so far and is rethrown as it is.
   * Either way nothing leaks and the next call starts from a clean encoder.
   *
   * The scopes open and close within one synchronous section (so concurrent calls cannot
   * interleave them); a call nested inside another call's `record` joins the outer scope. Popping
   * a scope does not wait for the GPU to finish (Dawn: ~0.3 ms), so a tracked frame can afford one.
   */
  async guard<T>(op: string, record: () => T, cleanup?: (value: T) => void): Promise<T> {
    const { value, error } = this.guardLater(op, record, cleanup);
    const err = await error;
    if (err) throw err;
    return value;
  }

  /**
   * `guard` for a synchronous call: returns the value at once, with `error`, the GpuError (or
   * null) that the call's owner must await before it uses the value (cleanup has then run).
   */
  guardLater<T>(op: string, record: () => T, cleanup?: (value: T) => void): { value: T; error: Promise<GpuError | null> } {
    if (this.scope) return { value: record(), error: Promise.resolve(null) };
    this.check();
    this.flush(); // earlier work is not this call's
    const state: ScopeState = { buffers: [], uniforms: [], compiles: [] };
    const dev = this.device;
    const filters = ['internal', 'out-of-memory', 'validation'] as const;
    for (const f of filters) dev.pushErrorScope(f);
    this.scope = state;
    let value: T;
    try {
      value = record();
      this.flush();
    } catch (e) {
      this.discard();
      this.scope = null;
      const pops = filters.map(() => dev.popErrorScope());
      // whatever the GPU also refused, the caller gets the library's error; drop what was made
      void Promise.all(pops).then((errs) => { if (errs.some((x) => x)) this.dropMade(state); }, () => undefined);
      throw e;
    }
    this.scope = null;
    const kinds = [...filters].reverse(); // popped in this order
    const pops = kinds.map(() => dev.popErrorScope());
    const error = Promise.all([...pops, ...state.compiles]).then((errs) => {
      // a pipeline's own verdict (a WGSL error) says more than "invalid pipeline" at the submit
      const compile = errs.slice(kinds.length).find((x) => x);
      const i = errs.findIndex((x) => x);
      if (i < 0) return null;
      this.dropMade(state);
      cleanup?.(value);
      this.flush();
      return compile ? new GpuError(op, 'validation', compile.message) : new GpuError(op, kinds[i]!, errs[i]!.message);
    }, (e: unknown) => new GpuError(op, 'internal', `popErrorScope failed: ${(e as Error).message}`));
    return { value, error };
  }

  /**
   * For a call that returns before the GPU's verdict (a draw into a canvas): its GpuError, if
   * any, is thrown by the next call on this context.
   */
  reportLater(error: Promise<GpuError | null>): void {
    void error.then((e) => { if (e) this.refused ??= e; });
  }

  /** After a refused call: forget its uniforms, destroy its buffers (now or when freed). */
  private dropMade(s: ScopeState): void {
    for (const key of s.uniforms) {
      const b = this.uniforms.get(key);
      this.uniforms.delete(key);
      if (b) this.retire(b);
    }
    for (const b of s.buffers) {
      if (this.freed.has(b)) {
        this.takeFromPool(b);
        this.retire(b);
      } else if (b.usage & 0x0080 /* STORAGE */) {
        this.poisoned.add(b);
      }
    }
  }

  // ---------------------------------------------------------------- reading back

  /** Reads back `bytes` bytes in several parts with one submit (see Readback). */
  readback(bytes: number): Readback {
    if (this.traced) throw new Error('GpuContext: nothing can be read back while tracing (a dry run)');
    return new Readback(this, bytes);
  }

  /** @internal a staging buffer of a Readback */
  stagingBuffer(size: number): GPUBuffer {
    this.check();
    return this.device.createBuffer({ size, usage: MAP_READ | COPY_DST });
  }

  /** @internal maps staging buffers after submitting the work that fills them */
  async mapStaging(buffers: readonly GPUBuffer[]): Promise<void> {
    this.flush();
    this.stats.readbacks++;
    try {
      await Promise.all(buffers.map((b) => b.mapAsync(1 /* GPUMapMode.READ */)));
    } catch (e) {
      this.check();
      throw e;
    }
    this.check();
  }

  // ---------------------------------------------------------------- profiling

  private profile: {
    querySet: GPUQuerySet | null;
    /** passes timed so far; pass k wrote timestamps 2k (begin) and 2k + 1 (end) */
    passes: number;
    /** segment of each timed pass */
    passSegment: number[];
    /** label of each segment (set by the mark that closes it) */
    labels: string[];
    /** without timestamp queries: when the GPU had finished each segment (ms, CPU clock) */
    done: Promise<number>[];
  } | null = null;

  private static readonly MAX_TIMED_PASSES = 2048; // 4096 queries: the limit of one query set

  /**
   * Starts a profile: `mark(label)` calls made by the model between its parts then split the GPU
   * time into labelled segments. With the `timestamp-query` feature every compute pass is timed
   * on the GPU (copies between passes are not); without it a mark submits the work so far and
   * notes when the queue has finished it. Off (and free) unless a benchmark asks for it.
   */
  startProfile(): void {
    const ts = this.device.features.has('timestamp-query');
    this.flush();
    this.profile = {
      querySet: ts ? this.device.createQuerySet({ type: 'timestamp', count: 2 * GpuContext.MAX_TIMED_PASSES }) : null,
      passes: 0, passSegment: [], labels: [], done: [],
    };
  }

  /** Closes the current profile segment under this label (a no-op unless profiling). */
  mark(label: string): void {
    const p = this.profile;
    if (!p) return;
    if (p.querySet) {
      if (this.pass) { this.pass.end(); this.pass = null; }
    } else {
      this.flush();
      p.done.push(this.device.queue.onSubmittedWorkDone().then(() => performance.now()));
    }
    p.labels.push(label);
  }

  /**
   * Ends the profile: the milliseconds of GPU work in each labelled segment, in order; the work
   * after the last mark is the segment 'rest'.
   */
  async endProfile(): Promise<{ label: string; ms: number }[]> {
    const p = this.profile;
    if (!p) return [];
    this.mark('rest');
    if (this.pass) { this.pass.end(); this.pass = null; }
    this.profile = null;
    if (!p.querySet) {
      const t = await Promise.all(p.done);
      return p.labels.map((label, i) => ({ label, ms: i === 0 ? 0 : t[i]! - t[i - 1]! }));
    }
    const ms = new Array<number>(p.labels.length).fill(0);
    if (p.passes > 0) {
      const bytes = p.passes * 16;
      const resolved = this.device.createBuffer({ size: bytes, usage: 0x0200 | 0x0004 }); // QUERY_RESOLVE | COPY_SRC
      if (!this.encoder) this.encoder = this.device.createCommandEncoder();
      this.encoder.resolveQuerySet(p.querySet, 0, 2 * p.passes, resolved, 0);
      const staging = this.device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST });
      this.encoder.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
      this.flush();
      await staging.mapAsync(MAP_READ);
      const t = new BigUint64Array(staging.getMappedRange().slice(0));
      staging.destroy();
      resolved.destroy();
      for (let k = 0; k < p.passes; k++) {
        const seg = p.passSegment[k]!;
        if (seg < ms.length) ms[seg]! += Number(t[2 * k + 1]! - t[2 * k]!) / 1e6;
      }
    }
    p.querySet.destroy();
    return p.labels.map((label, i) => ({ label, ms: ms[i]! }));
  }

  /** A compute pass, timed when a profile with timestamp queries is running. */
  private beginPass(encoder: GPUCommandEncoder): GPUComputePassEncoder {
    const p = this.profile;
    if (!p?.querySet || p.passes >= GpuContext.MAX_TIMED_PASSES) return encoder.beginComputePass();
    const k = p.passes++;
    p.passSegment.push(p.labels.length);
    return encoder.beginComputePass({
      timestampWrites: { querySet: p.querySet, beginningOfPassWriteIndex: 2 * k, endOfPassWriteIndex: 2 * k + 1 },
    });
  }

  /** Waits until the GPU has finished all submitted work. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }

  /** Reads a tensor back to the CPU as f32 (a Readback of one part). */
  async read(t: Tensor): Promise<Float32Array> {
    const rb = this.readback(t.byteLength);
    let raw: ArrayBuffer;
    try {
      rb.add(t, t.byteLength);
      [raw] = (await rb.read()) as [ArrayBuffer];
    } finally {
      rb.destroy();
    }
    if (t.dtype === 'f16') return f16ToF32Array(new Uint16Array(raw, 0, t.size));
    return new Float32Array(raw, 0, t.size);
  }

  /** Destroys the device; the context cannot be used afterwards. */
  destroy(): void {
    this.flush();
    this.device.destroy();
  }
}

function errorKind(e: GPUError): GpuErrorKind {
  const name = e.constructor?.name ?? '';
  return /OutOfMemory/i.test(name) ? 'out-of-memory' : /Internal/i.test(name) ? 'internal' : 'validation';
}

/** Largest part a Readback returns in one ArrayBuffer (what every JS engine allocates). */
export const MAX_READBACK_BYTES = 2 ** 31 - 8;

/**
 * Reading back several tensors (or the tiles of a result too large for one binding) with one
 * submit and one wait: `add` records a copy into staging buffers, appended to the current part;
 * `next` starts a new part; `read` submits, maps and returns each part in its own ArrayBuffer;
 * `destroy` frees the staging buffers (also after a failure). This is the only GPU->CPU path of
 * the library. Staging buffers are at most 256 MiB each (and within maxBufferSize).
 */
export class Readback {
  private readonly pieces: GPUBuffer[] = [];
  private readonly pieceBytes: number;
  private readonly total: number;
  /** bytes added so far */
  private used = 0;
  /** where each part starts */
  private readonly starts: number[] = [0];
  private done = false;

  constructor(private readonly ctx: GpuContext, byteLength: number) {
    if (!(Number.isInteger(byteLength) && byteLength >= 0)) throw new Error(`Readback: ${byteLength} bytes`);
    this.total = Math.ceil(byteLength / 4) * 4;
    this.pieceBytes = Math.max(4, Math.floor(Math.min(256 * MiB, ctx.device.limits.maxBufferSize) / 4) * 4);
  }

  /** Records a copy of `bytes` bytes (rounded up to 4) of `src` from byte `srcOffset`, appended to the current part. */
  add(src: Tensor | GPUBuffer, bytes: number, srcOffset = 0): void {
    const at = this.used;
    const n = Math.ceil(bytes / 4) * 4;
    if (at + n > this.total) throw new Error(`Readback: ${at + n} bytes added to a readback of ${this.total}`);
    if (at + n - this.starts[this.starts.length - 1]! > MAX_READBACK_BYTES) {
      throw new RangeError(`Readback: a result of more than ${MAX_READBACK_BYTES} bytes; ask for less at once`);
    }
    for (let done = 0; done < n;) {
      const piece = Math.floor((at + done) / this.pieceBytes);
      const offset = (at + done) % this.pieceBytes;
      const len = Math.min(n - done, this.pieceBytes - offset);
      this.ctx.copy(src, this.piece(piece), len, srcOffset + done, offset);
      done += len;
    }
    this.used += n;
  }

  /** Later adds go to a new part. */
  next(): void {
    this.starts.push(this.used);
  }

  private piece(i: number): GPUBuffer {
    while (this.pieces.length <= i) {
      const k = this.pieces.length;
      this.pieces.push(this.ctx.stagingBuffer(Math.max(4, Math.min(this.pieceBytes, this.total - k * this.pieceBytes))));
    }
    return this.pieces[i]!;
  }

  /** Submits the recorded work; returns each part's bytes. */
  async read(): Promise<ArrayBuffer[]> {
    if (this.done) throw new Error('Readback: already read');
    this.done = true;
    try {
      await this.ctx.mapStaging(this.pieces);
      const ends = [...this.starts.slice(1), this.used];
      const parts = ends.map((end, i) => new Uint8Array(end - this.starts[i]!));
      // copy each piece's mapped range into the parts it overlaps
      this.pieces.forEach((b, k) => {
        const p0 = k * this.pieceBytes, p1 = Math.min(p0 + b.size, this.used);
        if (p1 <= p0) return;
        const src = new Uint8Array(b.getMappedRange(0, p1 - p0));
        parts.forEach((dst, i) => {
          const a = Math.max(p0, this.starts[i]!), z = Math.min(p1, ends[i]!);
          if (a < z) dst.set(src.subarray(a - p0, z - p0), a - this.starts[i]!);
        });
      });
      return parts.map((x) => x.buffer);
    } finally {
      this.destroy();
    }
  }

  destroy(): void {
    for (const b of this.pieces) b.destroy();
    this.pieces.length = 0;
  }
}
