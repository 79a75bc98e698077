/**
 * Which adapter a device runs on, as far as kernel choice is concerned: what GPUAdapterInfo says
 * (vendor, architecture, device, description), the features and limits that decide which kernels
 * can run, and whether it is a software rasteriser (Mesa lavapipe, SwiftShader), whose best
 * kernels differ from a GPU's.
 */

export interface AdapterIdentity {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** the adapter's own claim (lavapipe and SwiftShader make it) */
  isFallbackAdapter: boolean;
  /** subgroup sizes the adapter reports (0 when unknown) */
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /** features of the device that change which kernels can run (sorted) */
  features: string[];
  /** limits of the device that change which kernels can run */
  limits: { maxComputeWorkgroupStorageSize: number; maxComputeInvocationsPerWorkgroup: number; maxStorageBufferBindingSize: number };
  /** a CPU implementation of WebGPU (then why, else '') */
  software: string;
}

/** Features that matter to kernel choice. */
const RELEVANT_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'];

const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|softpipe|software/i;

/** Why these adapter fields name a software adapter ('' when they do not). */
export function softwareReason(info: Partial<Pick<AdapterIdentity, 'vendor' | 'architecture' | 'device' | 'description' | 'isFallbackAdapter'>>): string {
  if (info.isFallbackAdapter) return 'isFallbackAdapter is true';
  for (const k of ['vendor', 'architecture', 'device', 'description'] as const) {
    const v = String(info[k] ?? '');
    if (SOFTWARE_NAMES.test(v)) return `${k} is '${v}'`;
  }
  return '';
}

/** The identity of the adapter behind `device` (GPUDevice.adapterInfo; empty strings where absent). */
export function adapterIdentity(device: GPUDevice): AdapterIdentity {
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const get = (k: string): unknown => (info ? (info as unknown as Record<string, unknown>)[k] : undefined);
  const str = (k: string): string => String(get(k) ?? '');
  const l = device.limits;
  const a = {
    vendor: str('vendor'), architecture: str('architecture'), device: str('device'), description: str('description'),
    isFallbackAdapter: get('isFallbackAdapter') === true,
    subgroupMinSize: Number(get('subgroupMinSize') ?? 0) || 0,
    subgroupMaxSize: Number(get('subgroupMaxSize') ?? 0) || 0,
    features: RELEVANT_FEATURES.filter((f) => device.features.has(f)),
    limits: {
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    },
  };
  return { ...a, software: softwareReason(a) };
}

/** One line naming the adapter, for reports. */
export function adapterName(a: AdapterIdentity): string {
  const parts = [a.vendor, a.architecture, a.device, a.description].filter((s) => s !== '');
  return `${[...new Set(parts)].join(' / ') || 'unknown adapter'}${a.software ? ' (software)' : ''}`;
}

/**
 * The key under which kernel choices are stored: everything above that identifies the adapter and
 * what it can run, and the library version. Two devices with equal keys get the same table.
 */
export function adapterKey(a: AdapterIdentity, libraryVersion: string): string {
  return JSON.stringify({
    v: libraryVersion, vendor: a.vendor, architecture: a.architecture, device: a.device, description: a.description,
    fallback: a.isFallbackAdapter, subgroups: [a.subgroupMinSize, a.subgroupMaxSize], features: a.features, limits: a.limits,
  });
}
