import { requestDevice, type DeviceOptions } from './device.js';
import { Tensor, bytesPerElement, numel, type DType } from './tensor.js';
import { f16ToF32Array } from './half.js';
import { adapterIdentity, type AdapterIdentity } from './adapter.js';
import { KernelChoices } from './kernel_choices.js';

/** Thrown for any use of a context whose device has been lost; the message gives Dawn's reason. */
export class DeviceLostError extends Error {
  override name = 'DeviceLostError';
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
 * Kernels are WGSL generated from their parameters (sizes are compiled in as constants), so a
 * pipeline is keyed by its WGSL text: the first frame compiles, later frames hit the cache.
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
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly pool = new Map<number, GPUBuffer[]>();
  private readonly uniforms = new Map<string, GPUBuffer>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private lostReason: string | null = null;
  private uncaptured: string | null = null;
  /** Bytes held by the buffers this context keeps: tensors' (pooled ones included) and uniforms'. */
  bytesHeld = 0;

  constructor(readonly device: GPUDevice) {
    this.hasF16 = device.features.has('shader-f16');
    this.hasSubgroups = device.features.has('subgroups');
    this.adapter = adapterIdentity(device);
    device.lost.then((info) => {
      this.lostReason = `${info.reason}: ${info.message}`;
    });
    device.addEventListener('uncapturederror', (ev) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.uncaptured ??= err.message;
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
    if (this.uncaptured !== null) {
      const msg = this.uncaptured;
      this.uncaptured = null;
      throw new Error(`WebGPU error: ${msg}`);
    }
  }

  // ---------------------------------------------------------------- pipelines

  /** The compute pipeline for this WGSL (entry point `main`), compiled once and cached by its text. */
  pipeline(label: string, wgsl: string): GPUComputePipeline {
    let p = this.pipelines.get(wgsl);
    if (!p) {
      if (this.traced) {
        // tracing: note what would be compiled, compile nothing
        if (!this.traced.has(wgsl)) this.traced.set(wgsl, label);
        return TRACED_PIPELINE;
      }
      this.check();
      const module = this.device.createShaderModule({ label, code: wgsl });
      p = this.device.createComputePipeline({ label, layout: 'auto', compute: { module, entryPoint: 'main' } });
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
    this.stats.buffersCreated++;
    this.stats.bytesCreated += size;
    return this.device.createBuffer({ size, usage });
  }

  /** A storage buffer of at least `bytes` bytes, from the pool when one of that size is free. */
  allocBuffer(bytes: number): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const list = this.pool.get(size);
    if (list && list.length > 0) return list.pop()!;
    this.bytesHeld += size;
    return this.createBuffer(size, STORAGE_USAGE);
  }

  /**
   * A uniform buffer holding these 32-bit words, made once per distinct content and kept: kernels
   * whose sizes are uniforms share one pipeline across shapes, and a model's shapes repeat every
   * frame, so nothing is allocated or uploaded per frame.
   */
  uniform(words: Uint32Array): GPUBuffer {
    const key = words.join(',');
    let b = this.uniforms.get(key);
    if (!b) {
      const UNIFORM = 0x0040;
      b = this.createBuffer(Math.max(16, Math.ceil(words.byteLength / 16) * 16), UNIFORM | COPY_DST);
      this.bytesHeld += b.size;
      this.device.queue.writeBuffer(b, 0, words as Uint32Array<ArrayBuffer>);
      this.uniforms.set(key, b);
    }
    return b;
  }

  /** Gives a buffer back to the pool (GPU work already recorded with it stays valid). */
  recycle(buffer: GPUBuffer): void {
    const list = this.pool.get(buffer.size);
    if (list) list.push(buffer);
    else this.pool.set(buffer.size, [buffer]);
  }

  /** Bytes of the free buffers waiting in the pool (`bytesHeld - bytesPooled` are in use). */
  get bytesPooled(): number {
    let n = 0;
    for (const list of this.pool.values()) for (const b of list) n += b.size;
    return n;
  }

  /** Destroys the pooled (free) buffers. */
  trimPool(): void {
    this.flush();
    for (const list of this.pool.values()) for (const b of list) {
      this.bytesHeld -= b.size;
      b.destroy();
    }
    this.pool.clear();
  }

  /** An uninitialised tensor (contents are whatever the pooled buffer held). */
  empty(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    return new Tensor(this, this.allocBuffer(numel(shape) * bytesPerElement(dtype)), shape, dtype);
  }

  /** Copies CPU data into a new tensor. f16 data is given as its raw 16-bit words. */
  upload(data: Float32Array | Uint16Array, shape: readonly number[], dtype: DType = data instanceof Uint16Array ? 'f16' : 'f32'): Tensor {
    if (data.length !== numel(shape)) throw new Error(`upload: ${data.length} values for shape [${shape}]`);
    if ((dtype === 'f16') !== (data instanceof Uint16Array)) throw new Error(`upload: ${dtype} needs ${dtype === 'f16' ? 'Uint16Array' : 'Float32Array'} data`);
    const t = this.empty(shape, dtype);
    this.write(t, data);
    return t;
  }

  /** Overwrites a tensor's contents from the CPU (ordered before work submitted later). */
  write(t: Tensor, data: Float32Array | Uint16Array): void {
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
    this.device.queue.writeBuffer(t.buffer, 0, bytes as Uint8Array<ArrayBuffer>);
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
    if (!this.encoder) return;
    if (this.pass) { this.pass.end(); this.pass = null; }
    const cmd = this.encoder.finish();
    this.encoder = null;
    this.device.queue.submit([cmd]);
    this.stats.submits++;
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

  /** Reads a tensor back to the CPU as f32. This is the only GPU->CPU path of the library. */
  async read(t: Tensor): Promise<Float32Array> {
    this.check();
    if (this.traced) throw new Error('GpuContext.read: nothing can be read back while tracing (a dry run)');
    const bytes = Math.ceil(t.byteLength / 4) * 4;
    const staging = this.device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST });
    this.copy(t, staging, bytes);
    this.flush();
    this.stats.readbacks++;
    try {
      await staging.mapAsync(1 /* GPUMapMode.READ */);
    } catch (e) {
      this.check();
      throw e;
    }
    this.check();
    const raw = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    if (t.dtype === 'f16') return f16ToF32Array(new Uint16Array(raw, 0, t.size));
    return new Float32Array(raw, 0, t.size);
  }

  /** Destroys the device; the context cannot be used afterwards. */
  destroy(): void {
    this.flush();
    this.device.destroy();
  }
}
