/**
 * PyTorch checkpoint (.pt, the zip torch.save writes) -> safetensors, in plain TypeScript for Node
 * and browsers. No Python, and nothing from the file is ever executed (see pickle.ts).
 *
 * The zip holds `<archive>/data.pkl`, a pickle of `{"model": state_dict}` (or of the state dict
 * itself) whose tensors point at raw storages `<archive>/data/<key>`. Each tensor is a strided view
 * (storage offset, size, stride) into its storage; it is materialised here as a contiguous
 * row-major array, sharing the input's bytes when it already is one.
 */
import { bf16ToF32Array, f32ToF16Array } from '../gpu/half.js';
import {
  safetensorsItemSize, writeSafetensors,
  type RawArray, type SafetensorsDType, type TensorToWrite,
} from '../io/safetensors.js';
import { TorchTensor, unpickle } from './pickle.js';
import { openZip } from './zip.js';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export interface CheckpointTensor {
  dtype: SafetensorsDType;
  shape: number[];
  /** Contiguous row-major data (F16/BF16 as 16-bit words). May be a view of the input bytes. */
  data: RawArray;
}

export interface ConvertOptions {
  /** Store every floating-point tensor as F16 (round to nearest even). Integer tensors are kept. */
  f16?: boolean;
  /** Called after each tensor is read. */
  onProgress?: (done: number, total: number, name: string) => void;
  /** The file's name, for error messages. */
  source?: string;
}

/** Reads the state dict's tensors, by name in the state dict's order. Entries that are not tensors are skipped. */
export function readCheckpoint(bytes: Uint8Array, opts: ConvertOptions = {}): Map<string, CheckpointTensor> {
  const source = opts.source ?? '<bytes>';
  const fail = (msg: string): never => {
    throw new CheckpointError(`${source}: ${msg}`);
  };
  const zip = openZip(bytes, source);

  const pkl = [...zip.entries.keys()].find((n) => /^[^/]*\/data\.pkl$/.test(n)) ??
    fail(`no "<archive>/data.pkl" entry: not a PyTorch checkpoint (entries: ${[...zip.entries.keys()].slice(0, 5).join(', ')}...)`);
  const prefix = pkl.slice(0, -'data.pkl'.length);
  const byteorderEntry = zip.entries.has(prefix + 'byteorder') ? new TextDecoder().decode(zip.read(prefix + 'byteorder')) : 'little';
  if (byteorderEntry !== 'little' && byteorderEntry !== 'big') fail(`unknown byteorder "${byteorderEntry}"`);
  const bigEndian = byteorderEntry === 'big';

  const top = unpickle(zip.read(pkl), `${source}: ${pkl}`);
  if (!(top instanceof Map)) return fail('the pickled object is not a dict (expected {"model": state_dict} or a state dict)');
  const model = top.get('model');
  const stateDict = model instanceof Map ? model : top;
  const items = [...stateDict].filter((kv): kv is [unknown, TorchTensor] => kv[1] instanceof TorchTensor);
  if (items.length === 0) {
    fail(`no tensors found; the top-level keys are ${[...top.keys()].map((k) => JSON.stringify(k)).join(', ')}`);
  }

  const storages = new Map<string, Uint8Array>();
  const out = new Map<string, CheckpointTensor>();
  for (const [key, t] of items) {
    const name = String(key);
    const { dtype, key: storageKey } = t.storage;
    let storage = storages.get(storageKey);
    if (!storage) {
      const entry = `${prefix}data/${storageKey}`;
      if (!zip.entries.has(entry)) fail(`the storage of tensor "${name}" (entry "${entry}") is missing from the archive: the file is corrupt`);
      storage = zip.read(entry);
      storages.set(storageKey, storage);
    }
    out.set(name, { dtype, shape: t.shape, data: materialise(t, storage, bigEndian, (m) => fail(`tensor "${name}": ${m}`)) });
    opts.onProgress?.(out.size, items.length, name);
  }
  return out;
}

/** Converts checkpoint bytes to safetensors bytes (metadata {"format": "pt"}). */
export function convertCheckpoint(bytes: Uint8Array, opts: ConvertOptions = {}): Uint8Array {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of readCheckpoint(bytes, opts)) {
    tensors[name] = opts.f16 ? toF16(t) : t;
  }
  return writeSafetensors(tensors, { format: 'pt' });
}

/** Browser entry point: a .pt File/Blob to a safetensors Blob. */
export async function convertFile(file: Blob, opts: ConvertOptions = {}): Promise<Blob> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const source = opts.source ?? ('name' in file ? String((file as File).name) : '<blob>');
  return new Blob([convertCheckpoint(bytes, { ...opts, source }) as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' });
}

function toF16(t: CheckpointTensor): CheckpointTensor {
  let f32: Float32Array;
  switch (t.dtype) {
    case 'F16': return t;
    case 'F32': f32 = t.data as Float32Array; break;
    case 'BF16': f32 = bf16ToF32Array(t.data as Uint16Array); break;
    case 'F64': f32 = Float32Array.from(t.data as Float64Array); break;
    default: return t; // integers and bools keep their dtype
  }
  return { dtype: 'F16', shape: t.shape, data: f32ToF16Array(f32) };
}

/**
 * The tensor `t` as a contiguous array, read from its storage's bytes. Elements are copied as
 * unsigned words of min(itemSize, 4) bytes, so one strided gather serves every dtype.
 */
function materialise(t: TorchTensor, storage: Uint8Array, bigEndian: boolean, fail: (msg: string) => never): RawArray {
  const { shape, stride, storageOffset: offset } = t;
  const itemSize = safetensorsItemSize(t.storage.dtype);
  const numel = shape.reduce((a, b) => a * b, 1);
  if (shape.some((d) => d < 0) || stride.some((s) => s < 0) || offset < 0) {
    fail(`negative size, stride or offset (size [${shape}], stride [${stride}], offset ${offset})`);
  }
  const storageNumel = Math.floor(storage.byteLength / itemSize);
  if (storageNumel < t.storage.numel) {
    fail(`its storage "${t.storage.key}" has ${storage.byteLength} bytes, less than the ${t.storage.numel} x ${itemSize} the pickle says: the file is corrupt`);
  }
  // One past the last element the view touches.
  const end = numel === 0 ? offset : offset + 1 + shape.reduce((a, d, i) => a + (d - 1) * stride[i]!, 0);
  if (end > storageNumel) {
    fail(`the view (offset ${offset}, size [${shape}], stride [${stride}]) reaches element ${end - 1} ` +
      `of a storage of ${storageNumel} elements: the file is corrupt`);
  }

  let contiguous = true;
  for (let i = shape.length - 1, expect = 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) contiguous = false;
    expect *= shape[i]!;
  }
  const byteStart = storage.byteOffset + offset * itemSize;
  let buf: ArrayBuffer;
  let byteOffset = 0;
  if (contiguous && !bigEndian && byteStart % itemSize === 0) {
    buf = storage.buffer as ArrayBuffer; // zero-copy view
    byteOffset = byteStart;
  } else if (contiguous) {
    buf = storage.slice(offset * itemSize, (offset + numel) * itemSize).buffer as ArrayBuffer;
  } else {
    // Strided gather in word units: an item of k words is a trailing dimension of size k.
    const word = Math.min(itemSize, 4);
    const k = itemSize / word;
    const W = word === 1 ? Uint8Array : word === 2 ? Uint16Array : Uint32Array;
    const aligned = storage.byteOffset % word === 0 ? storage : storage.slice();
    const src = new W(aligned.buffer as ArrayBuffer, aligned.byteOffset, Math.floor(aligned.byteLength / word));
    const dst = new W(numel * k);
    gather(src, dst, offset * k, [...shape, k], [...stride.map((s) => s * k), 1]);
    buf = dst.buffer as ArrayBuffer;
  }
  if (bigEndian) swapBytes(new Uint8Array(buf), itemSize);
  return typedArray(t.storage.dtype, buf, byteOffset, numel);
}

/** dst[i] = src[offset + sum_d idx_d(i) * stride[d]] over the row-major indices of `shape`. */
function gather(src: Uint8Array | Uint16Array | Uint32Array, dst: Uint8Array | Uint16Array | Uint32Array,
  offset: number, shape: number[], stride: number[]): void {
  if (dst.length === 0) return;
  const nd = shape.length;
  const inner = shape[nd - 1]!;
  const innerStride = stride[nd - 1]!;
  const idx = new Array<number>(nd - 1).fill(0);
  let base = offset;
  for (let o = 0; o < dst.length;) {
    for (let j = 0, s = base; j < inner; j++, s += innerStride) dst[o++] = src[s]!;
    for (let d = nd - 2; d >= 0; d--) { // odometer over the outer dimensions
      base += stride[d]!;
      if (++idx[d]! < shape[d]!) break;
      base -= stride[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

function swapBytes(b: Uint8Array, itemSize: number): void {
  if (itemSize === 1) return;
  for (let i = 0; i < b.length; i += itemSize) b.subarray(i, i + itemSize).reverse();
}

function typedArray(dtype: SafetensorsDType, buf: ArrayBuffer, off: number, n: number): RawArray {
  switch (dtype) {
    case 'F64': return new Float64Array(buf, off, n);
    case 'F32': return new Float32Array(buf, off, n);
    case 'F16': case 'BF16': case 'U16': return new Uint16Array(buf, off, n);
    case 'I64': return new BigInt64Array(buf, off, n);
    case 'U64': return new BigUint64Array(buf, off, n);
    case 'I32': return new Int32Array(buf, off, n);
    case 'U32': return new Uint32Array(buf, off, n);
    case 'I16': return new Int16Array(buf, off, n);
    case 'I8': return new Int8Array(buf, off, n);
    case 'U8': case 'BOOL': return new Uint8Array(buf, off, n);
  }
}
