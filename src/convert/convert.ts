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
import { drive, driveSync } from '../io/abort.js';
import {
  safetensorsItemSize, writeSafetensors,
  type RawArray, type SafetensorsDType, type TensorToWrite,
} from '../io/safetensors.js';
import { createUnpickler, describe, dims, PyDict, TorchTensor } from './pickle.js';
import { crc32, openZip } from './zip.js';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export interface CheckpointTensor {
  dtype: SafetensorsDType;
  shape: number[];
  /** Contiguous row-major data (F16/BF16 as 16-bit words). May be a view of the input bytes. */
  data: RawArray;
}

/** What a conversion did, for tests that bound its cost by the file's size. */
export interface CheckpointStats {
  /** bytes of the file */
  fileBytes: number;
  /** bytes of data.pkl, and the opcodes run to read it */
  pickleBytes: number;
  opcodes: number;
  /** estimated heap bytes of the objects the pickle made */
  pickleMemory: number;
  /** bytes of storage entries read (and CRC-checked) */
  storageBytes: number;
  /** bytes of the tensors produced (data plus an estimate of their safetensors header entries) */
  outputBytes: number;
}

export interface ConvertOptions {
  /** Store every floating-point tensor as F16 (round to nearest even). Integer tensors are kept. */
  f16?: boolean;
  /** Called after each tensor is read. */
  onProgress?: (done: number, total: number, name: string) => void;
  /** The file's name, for error messages. */
  source?: string;
  /** Cancels an async conversion (`readCheckpointAsync`, `convertCheckpointAsync`, `convertFile`). */
  signal?: AbortSignal;
  /** Filled in with what the conversion did (see CheckpointStats). */
  stats?: CheckpointStats;
}

/**
 * The tensors of a state dict may hold at most OUTPUT_PER_INPUT_BYTE bytes (with their header
 * entries) per byte of the file, plus OUTPUT_SLACK: a state dict cannot be much larger than the
 * storages it views. A checkpoint whose tensors share storage (tied weights) fits; stride-0 or
 * overlapping views that repeat a few bytes into gigabytes do not.
 */
export const OUTPUT_PER_INPUT_BYTE = 2;
export const OUTPUT_SLACK = 1 << 20;
/**
 * A tensor's safetensors header entry is at most this long, plus up to 6 bytes per character of
 * its name (JSON escapes) and 18 per dimension (16 digits, a comma, and one of the strides').
 */
const HEADER_ENTRY_BYTES = 96;
const headerEntryBytes = (name: string, rank: number) => HEADER_ENTRY_BYTES + 6 * name.length + 18 * rank;

/** Opcodes per unpickling slice, bytes per CRC slice: each takes a few milliseconds. */
const PICKLE_SLICE_OPS = 1 << 14;
const CRC_SLICE_BYTES = 8 << 20;

/** Reads the state dict's tensors, by name in the state dict's order. Entries that are not tensors are skipped. */
export function readCheckpoint(bytes: Uint8Array, opts: ConvertOptions = {}): Map<string, CheckpointTensor> {
  return driveSync(readSteps(bytes, opts));
}

/** `readCheckpoint` in slices, yielding to the event loop between them; `opts.signal` cancels it (AbortError). */
export function readCheckpointAsync(bytes: Uint8Array, opts: ConvertOptions = {}): Promise<Map<string, CheckpointTensor>> {
  return drive(readSteps(bytes, opts), opts.source ?? '<bytes>', opts.signal);
}

/** Converts checkpoint bytes to safetensors bytes (metadata {"format": "pt"}). */
export function convertCheckpoint(bytes: Uint8Array, opts: ConvertOptions = {}): Uint8Array {
  return driveSync(convertSteps(bytes, opts));
}

/** `convertCheckpoint` in slices, yielding to the event loop between them; `opts.signal` cancels it (AbortError). */
export function convertCheckpointAsync(bytes: Uint8Array, opts: ConvertOptions = {}): Promise<Uint8Array> {
  return drive(convertSteps(bytes, opts), opts.source ?? '<bytes>', opts.signal);
}

/** Browser entry point: a .pt File/Blob to a safetensors Blob. */
export async function convertFile(file: Blob, opts: ConvertOptions = {}): Promise<Blob> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const source = opts.source ?? ('name' in file ? String((file as File).name) : '<blob>');
  const out = await convertCheckpointAsync(bytes, { ...opts, source });
  return new Blob([out as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' });
}

function* convertSteps(bytes: Uint8Array, opts: ConvertOptions): Generator<void, Uint8Array> {
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, t] of yield* readSteps(bytes, opts)) {
    tensors.set(name, opts.f16 ? toF16(t) : t);
    yield;
  }
  return writeSafetensors(tensors, { format: 'pt' });
}

function* readSteps(bytes: Uint8Array, opts: ConvertOptions): Generator<void, Map<string, CheckpointTensor>> {
  const source = opts.source ?? '<bytes>';
  const fail = (msg: string): never => {
    throw new CheckpointError(`${source}: ${msg}`);
  };
  const stats: CheckpointStats = Object.assign(opts.stats ?? {}, {
    fileBytes: bytes.byteLength, pickleBytes: 0, opcodes: 0, pickleMemory: 0, storageBytes: 0, outputBytes: 0,
  });
  const zip = openZip(bytes, source);

  const pkl = [...zip.entries.keys()].find((n) => /^[^/]*\/data\.pkl$/.test(n)) ??
    fail(`no "<archive>/data.pkl" entry: not a PyTorch checkpoint (entries: ${[...zip.entries.keys()].slice(0, 5).map((n) => describe(n)).join(', ')}...)`);
  const prefix = pkl.slice(0, -'data.pkl'.length);
  const byteorderEntry = zip.entries.has(prefix + 'byteorder') ? new TextDecoder().decode(zip.read(prefix + 'byteorder')) : 'little';
  if (byteorderEntry !== 'little' && byteorderEntry !== 'big') fail(`unknown byteorder ${describe(byteorderEntry)}`);
  const bigEndian = byteorderEntry === 'big';

  const pickle = zip.read(pkl);
  stats.pickleBytes = pickle.byteLength;
  const unpickler = createUnpickler(pickle, `${source}: ${pkl}`);
  try {
    while (!unpickler.step(PICKLE_SLICE_OPS)) yield;
  } finally {
    stats.opcodes = unpickler.stats.opcodes;
    stats.pickleMemory = unpickler.stats.memory;
  }
  const top = unpickler.result;
  if (!(top instanceof PyDict)) return fail('the pickled object is not a dict (expected {"model": state_dict} or a state dict)');
  const model = top.get('model');
  const stateDict = model instanceof PyDict ? model : top;
  const items = [...stateDict.entries()].filter((kv): kv is [unknown, TorchTensor] => kv[1] instanceof TorchTensor);
  if (items.length === 0) {
    const keys = [...top.keys()];
    fail(`no tensors found; the top-level keys are ${keys.slice(0, 8).map((k) => describe(k)).join(', ')}${keys.length > 8 ? ', ...' : ''}`);
  }

  // Every tensor is checked against its storage, and the total against the file, before any byte is copied.
  const outputLimit = OUTPUT_PER_INPUT_BYTE * bytes.byteLength + OUTPUT_SLACK;
  const plan: { name: string; t: TorchTensor; entry: string }[] = [];
  for (const [key, t] of items) {
    if (typeof key !== 'string') {
      fail(`a tensor's key is ${describe(key)}, not a string: a state dict is keyed by parameter names ` +
        `(a key given as an int would collide with the same name as a string)`);
    }
    const name = key as string;
    if (name === '__metadata__') {
      fail('a tensor is named "__metadata__", the name the safetensors format keeps for its metadata: it cannot be written');
    }
    const where = `tensor ${describe(name)}`;
    const { shape, stride, storageOffset: offset } = t;
    // The header entry first (O(1), at least as large as the rank): a shape shared by many tensors
    // through the memo is then walked only while the output stays within its limit.
    stats.outputBytes += headerEntryBytes(name, shape.length);
    const tooLarge = () => fail(`${where} (size ${dims(shape)}, stride ${dims(stride)}) takes the state dict's tensors past ` +
      `${outputLimit} bytes, ${OUTPUT_PER_INPUT_BYTE} times the file's ${bytes.byteLength} bytes (+${OUTPUT_SLACK}): views that ` +
      `repeat their storage's bytes (stride 0, or many tensors over one storage) are refused beyond that`);
    if (stats.outputBytes > outputLimit) tooLarge();
    const entry = `${prefix}data/${t.storage.key}`;
    const e = zip.entries.get(entry) ?? fail(`the storage of ${where} (entry ${describe(entry)}) is missing from the archive: the file is corrupt`);
    const itemSize = safetensorsItemSize(t.storage.dtype);
    if (shape.some((d) => d < 0) || stride.some((st) => st < 0) || offset < 0) {
      fail(`${where}: negative size, stride or offset (size ${dims(shape)}, stride ${dims(stride)}, offset ${offset})`);
    }
    const storageNumel = Math.floor(e.size / itemSize);
    if (storageNumel < t.storage.numel) {
      fail(`${where}: its storage ${describe(t.storage.key)} has ${e.size} bytes, less than the ${t.storage.numel} x ${itemSize} the pickle says: the file is corrupt`);
    }
    // numel, stopping as soon as the total output would pass its limit (so nothing overflows)
    const room = (outputLimit - stats.outputBytes) / itemSize;
    let numel = shape.includes(0) ? 0 : 1;
    for (const d of numel ? shape : []) {
      numel *= d;
      if (numel > room) break;
    }
    stats.outputBytes += numel * itemSize;
    if (stats.outputBytes > outputLimit) tooLarge();
    // One past the last element the view touches, summed term by term so that nothing is inexact.
    let end = offset + 1;
    for (let i = 0; i < shape.length && numel > 0; i++) {
      end += (shape[i]! - 1) * stride[i]!;
      if (end > storageNumel) break;
    }
    if (numel > 0 && end > storageNumel) {
      fail(`${where}: the view (offset ${offset}, size ${dims(shape)}, stride ${dims(stride)}) reaches ` +
        `${end - 1 <= Number.MAX_SAFE_INTEGER ? `element ${end - 1}` : 'past the end'} of a storage of ${storageNumel} elements: the file is corrupt`);
    }
    plan.push({ name, t, entry });
  }

  const storages = new Map<string, Uint8Array>();
  const out = new Map<string, CheckpointTensor>();
  for (const { name, t, entry } of plan) {
    let storage = storages.get(entry);
    if (!storage) {
      storage = zip.data(entry);
      let crc = 0;
      for (let p = 0; p < storage.byteLength; p += CRC_SLICE_BYTES) {
        crc = crc32(storage.subarray(p, p + CRC_SLICE_BYTES), crc);
        if (p + CRC_SLICE_BYTES < storage.byteLength) yield;
      }
      zip.checkCrc(entry, crc);
      stats.storageBytes += storage.byteLength;
      storages.set(entry, storage);
    }
    out.set(name, { dtype: t.storage.dtype, shape: [...t.shape], data: materialise(t, storage, bigEndian) });
    opts.onProgress?.(out.size, plan.length, name);
    yield;
  }
  return out;
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
 * The tensor `t` as a contiguous array, read from its storage's bytes (the view was checked to lie
 * inside it). Elements are copied as unsigned words of min(itemSize, 4) bytes, so one strided
 * gather serves every dtype.
 */
function materialise(t: TorchTensor, storage: Uint8Array, bigEndian: boolean): RawArray {
  const { shape, stride, storageOffset: offset } = t;
  const itemSize = safetensorsItemSize(t.storage.dtype);
  const numel = shape.reduce((a, b) => a * b, 1);
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
