/**
 * Getting a WebGPU device, in a browser (navigator.gpu) or in Node (the `webgpu` package, Dawn).
 *
 * In Node, the object returned by the `webgpu` package's `create()` must stay reachable for as long
 * as any device made from it lives: if it is garbage-collected, Dawn crashes. We keep every one in
 * a module-level set for the life of the process.
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
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof navigator === 'undefined'
  || (typeof process !== 'undefined' && !!process.versions?.node && !(globalThis as { navigator?: Navigator }).navigator?.gpu);

async function nodeGPU(): Promise<GPU> {
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

/** Requests an adapter and a device with the limits this library needs. */
export async function requestDevice(opts: DeviceOptions = {}): Promise<GPUDevice> {
  const gpu = await getGPU();
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    const where = typeof process !== 'undefined' && process.platform === 'linux' ? ' ' + LINUX_HINT : '';
    throw new WebGPUUnavailableError(`No WebGPU adapter was found.${where}`);
  }
  const requiredFeatures: GPUFeatureName[] = [];
  if ((opts.f16 ?? true) && adapter.features.has('shader-f16')) requiredFeatures.push('shader-f16');
  if (adapter.features.has('timestamp-query')) requiredFeatures.push('timestamp-query'); // for GpuContext profiles
  // subgroup reductions in the softmax and layer-norm candidates (kernels/softmax.ts, layernorm.ts)
  if (adapter.features.has('subgroups' as GPUFeatureName)) requiredFeatures.push('subgroups' as GPUFeatureName);
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    },
  });
  keepAlive.add(device);
  return device;
}
