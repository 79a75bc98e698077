/**
 * Getting a WebGPU device, in a browser (navigator.gpu) or in Node (the `webgpu` package, Dawn).
 *
 * In Node, the object returned by the `webgpu` package's `create()` must stay reachable for as long
 * as any device made from it lives: if it is garbage-collected, Dawn crashes. We make one per
 * process and keep it (and every device) in a module-level set for the life of the process.
 *
 * The device gets the adapter's own limits (not WebGPU's defaults): the largest buffer, binding
 * and texture the hardware allows. The library tiles what grows with the input, so it works at the
 * default 128 MiB binding too; `limits` can ask for less (tests do, to run at the common limit).
 */

/** Thrown when no WebGPU adapter can be had; the message says what to install. */
export class WebGPUUnavailableError extends Error {
  override name = 'WebGPUUnavailableError';
}

const keepAlive = new Set<unknown>();

export interface DeviceOptions {
  /** Ask for `shader-f16` when the adapter has it (default true). */
  f16?: boolean;
  powerPreference?: GPUPowerPreference;
  /**
   * Limits to ask for instead of the adapter's (each at most the adapter's and at least WebGPU's
   * default), e.g. `{ maxStorageBufferBindingSize: 128 * 2 ** 20 }` to run as most browsers do.
   */
  limits?: Partial<Record<string, number>>;
  /**
   * Node: let Dawn's two notices of limits it clamps ("maxDynamic...BuffersPerPipelineLayout
   * artificially reduced ...") through to stderr; they are filtered out by default (Linux).
   */
  dawnNotices?: boolean;
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof navigator === 'undefined'
  || (typeof process !== 'undefined' && !!process.versions?.node && !(globalThis as { navigator?: Navigator }).navigator?.gpu);

let nodeGPUPromise: Promise<GPU> | null = null;

/** The process's Dawn instance (one: each would enumerate the adapters again). */
function nodeGPU(): Promise<GPU> {
  nodeGPUPromise ??= (async () => {
    // The module name is held in a variable so that bundlers for the browser leave it alone.
    const name = 'webgpu';
    let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
    try {
      mod = await import(/* @vite-ignore */ name);
    } catch (e) {
      throw new WebGPUUnavailableError(
        `WebGPU for Node needs the 'webgpu' package (npm install webgpu): ${(e as Error).message}`);
    }
    Object.assign(globalThis, mod.globals);
    const gpu = mod.create([]);
    keepAlive.add(gpu);
    return gpu;
  })();
  nodeGPUPromise.catch(() => { nodeGPUPromise = null; });
  return nodeGPUPromise;
}

/**
 * Dawn's notices that it clamped two limits of the Vulkan driver to what it supports (printed by
 * the native code straight to file descriptor 2 while it enumerates adapters, once per process).
 * They say nothing a user can act on.
 */
const DAWN_NOTICE = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;

/**
 * Calls `f` (synchronous native code) with file descriptor 2 sent to a temporary file, then writes
 * what it printed, less Dawn's clamping notices, to stderr. Node has no dup2: the original stderr
 * is reopened through /proc/self/fd, which gives the same pipe or terminal, so this is done only
 * on Linux and only when stderr is a pipe or a character device (not a regular file, whose
 * reopened description would keep its own offset, nor a socket, which cannot be reopened).
 * Otherwise `f` runs as it is.
 */
async function withoutDawnNotices<T>(f: () => T): Promise<T> {
  const proc = typeof process !== 'undefined' ? process : undefined;
  if (proc?.platform !== 'linux') return f();
  let fs: typeof import('node:fs'), os: typeof import('node:os'), path: typeof import('node:path');
  try {
    const names = ['node:fs', 'node:os', 'node:path'];
    [fs, os, path] = await Promise.all(names.map((n) => import(/* @vite-ignore */ n))) as [typeof fs, typeof os, typeof path];
    // What stderr is, from its /proc link, not fstat: Node 20 leaves an fstat's result in a shared
    // buffer where a pipe's mode then breaks the next ESM import through a symlinked package.
    const target = fs.readlinkSync('/proc/self/fd/2');
    const reopenable = target.startsWith('pipe:') || /^\/dev\/(pts\/\d+|tty\w*|null|console)$/.test(target);
    fs.readlinkSync('/proc/self/fd/0'); // 0 and 1 open: a descriptor opened after closing 2 is 2
    fs.readlinkSync('/proc/self/fd/1');
    if (!reopenable) return f();
  } catch {
    return f();
  }
  const file = path.join(os.tmpdir(), `etam-dawn-stderr-${proc.pid}-${Date.now()}`);
  let saved: number;
  try {
    saved = fs.openSync('/proc/self/fd/2', 'a'); // the original stderr, reopened (not possible for a socket)
  } catch {
    return f();
  }
  let result: T;
  try {
    fs.closeSync(2);
    let fd = -1;
    try {
      fd = fs.openSync(file, 'a', 0o600);
      if (fd !== 2) throw new Error(`descriptor ${fd}`);
      result = f();
    } finally {
      if (fd >= 0) fs.closeSync(fd);
      fs.openSync(`/proc/self/fd/${saved}`, 'a'); // 2 again
    }
  } finally {
    fs.closeSync(saved);
  }
  try {
    const rest = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0 && !DAWN_NOTICE.test(l));
    if (rest.length > 0) proc.stderr.write(rest.join('\n') + '\n');
  } finally {
    fs.rmSync(file, { force: true });
  }
  return result;
}

const LINUX_HINT =
  'On Linux without a GPU, install a Vulkan driver that Dawn accepts: Mesa >= 23 lavapipe ' +
  '(Debian bookworm: apt-get install -t bookworm-backports mesa-vulkan-drivers) and run with ' +
  'VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json and XDG_RUNTIME_DIR set.';

/** Returns the platform's GPU object, or throws WebGPUUnavailableError. */
export async function getGPU(): Promise<GPU> {
  const nav = (globalThis as { navigator?: Navigator }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (isNode) return nodeGPU();
  throw new WebGPUUnavailableError(
    'This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome, Edge or Firefox, ' +
    'served from https:// or http://127.0.0.1 (WebGPU needs a secure origin); in Chromium on Linux, ' +
    'start it with --enable-unsafe-webgpu.');
}

/** Requests an adapter and a device with the adapter's limits (or those of `opts.limits`). */
export async function requestDevice(opts: DeviceOptions = {}): Promise<GPUDevice> {
  const gpu = await getGPU();
  const ask = () => gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  const adapter = await (isNode && !opts.dawnNotices ? withoutDawnNotices(ask) : ask());
  if (!adapter) {
    const where = typeof process !== 'undefined' && process.platform === 'linux' ? ' ' + LINUX_HINT : '';
    throw new WebGPUUnavailableError(`No WebGPU adapter was found.${where}`);
  }
  const requiredFeatures: GPUFeatureName[] = [];
  if ((opts.f16 ?? true) && adapter.features.has('shader-f16')) requiredFeatures.push('shader-f16');
  if (adapter.features.has('timestamp-query')) requiredFeatures.push('timestamp-query'); // for GpuContext profiles
  // subgroup reductions in the softmax and layer-norm candidates (kernels/softmax.ts, layernorm.ts)
  if (adapter.features.has('subgroups' as GPUFeatureName)) requiredFeatures.push('subgroups' as GPUFeatureName);
  const requiredLimits: Record<string, number> = {};
  const l = adapter.limits as unknown as Record<string, unknown>;
  for (const key in l) {
    const v = l[key];
    if (typeof v === 'number') requiredLimits[key] = v;
  }
  for (const [key, v] of Object.entries(opts.limits ?? {})) {
    if (v === undefined) continue;
    if (!(key in requiredLimits)) throw new WebGPUUnavailableError(`requestDevice: the adapter has no limit '${key}'`);
    // "min..." limits (alignments) are better when smaller: keep the adapter's when it is
    requiredLimits[key] = key.startsWith('min') ? Math.max(v, requiredLimits[key]!) : Math.min(v, requiredLimits[key]!);
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  keepAlive.add(device);
  return device;
}
