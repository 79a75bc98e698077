/**
 * A restricted unpickler for the `data.pkl` of a PyTorch checkpoint, written from the pickle
 * format (CPython's Lib/pickletools.py documents every opcode).
 *
 * It never runs code from the file. A pickle names Python callables with GLOBAL/STACK_GLOBAL and
 * calls them with REDUCE; here a GLOBAL is looked up in a short whitelist of the state-dict
 * containers and tensor constructors, each re-implemented in TypeScript below, and any other name
 * (`os.system`, `builtins.eval`, ...) stops the load with a `PickleError` naming it.
 *
 * What a torch.save'd state dict pickles to, and what it becomes here:
 *   dict / collections.OrderedDict       -> Map
 *   list / tuple                         -> array
 *   int (BININT*, LONG1/4) / float / str -> number (bigint beyond 2^53) / number / string
 *   persistent id ('storage', torch.FloatStorage, key, location, numel) -> TorchStorage
 *   torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
 *                                        -> TorchTensor (a view; nothing is read yet)
 *   torch._utils._rebuild_parameter(tensor, requires_grad, hooks) -> the same TorchTensor
 */
import type { SafetensorsDType } from '../io/safetensors.js';

export class PickleError extends Error {
  override name = 'PickleError';
}

/** A storage named by the pickle; its bytes are the zip entry `<archive>/data/<key>`. */
export class TorchStorage {
  constructor(
    readonly dtype: SafetensorsDType,
    readonly key: string,
    readonly location: string,
    /** Number of elements (of `dtype`). */
    readonly numel: number,
  ) {}
}

/** A tensor as torch stores it: a strided view into a storage (offsets and strides in elements). */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage,
    readonly storageOffset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** torch's storage classes, as the pickle names them, and the dtype of their elements. */
const STORAGE_DTYPES: Record<string, SafetensorsDType> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8',
  ByteStorage: 'U8', BoolStorage: 'BOOL',
  UntypedStorage: 'U8', // raw bytes (torch >= 2.0 when an untyped storage is saved directly)
};

/** A whitelisted global: a storage class (used only inside persistent ids) or a function REDUCE may call. */
class PyGlobal {
  constructor(
    readonly qualname: string,
    readonly storageDType?: SafetensorsDType,
    readonly call?: (args: unknown[]) => unknown,
  ) {}
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);
const isIntList = (v: unknown): v is number[] => Array.isArray(v) && v.every(isInt);

function rebuildTensorV2(args: unknown[]): TorchTensor {
  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  const [storage, offset, size, stride] = args;
  if (args.length < 4 || !(storage instanceof TorchStorage) || !isInt(offset) || !isIntList(size) ||
      !isIntList(stride) || size.length !== stride.length) {
    throw new PickleError('torch._utils._rebuild_tensor_v2: expected (storage, offset, size, stride, ...)');
  }
  return new TorchTensor(storage, offset, [...size], [...stride]);
}

function rebuildParameter(args: unknown[]): TorchTensor {
  // (data, requires_grad, backward_hooks)
  if (!(args[0] instanceof TorchTensor)) throw new PickleError('torch._utils._rebuild_parameter: expected a tensor');
  return args[0];
}

function orderedDict(args: unknown[]): Map<unknown, unknown> {
  if (args.length !== 0) throw new PickleError('collections.OrderedDict: only the empty constructor is accepted');
  return new Map();
}

function resolveGlobal(module: string, name: string): PyGlobal {
  const q = `${module}.${name}`;
  if (module === 'torch' && name in STORAGE_DTYPES) return new PyGlobal(q, STORAGE_DTYPES[name]);
  switch (q) {
    case 'collections.OrderedDict': return new PyGlobal(q, undefined, orderedDict);
    case 'torch._utils._rebuild_tensor_v2': return new PyGlobal(q, undefined, rebuildTensorV2);
    case 'torch._utils._rebuild_parameter': return new PyGlobal(q, undefined, rebuildParameter);
  }
  throw new PickleError(`refused to load the global "${q}": only tensors and state-dict containers are accepted ` +
    `(allowed: collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, ` +
    `torch.*Storage); the file may be malicious, or holds Python objects other than a state dict`);
}

/** BINPERSID's argument: torch's ('storage', storage_class, key, location, numel). */
function persistentLoad(pid: unknown): TorchStorage {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length !== 5) {
    throw new PickleError(`unsupported persistent id ${describe(pid)}: expected ('storage', type, key, location, numel)`);
  }
  const [, type, key, location, numel] = pid;
  if (!(type instanceof PyGlobal) || !type.storageDType || typeof key !== 'string' || typeof location !== 'string' || !isInt(numel)) {
    throw new PickleError(`malformed storage persistent id ${describe(pid)}`);
  }
  return new TorchStorage(type.storageDType, key, location, numel);
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return `(${v.map(describe).join(', ')})`;
  if (v instanceof PyGlobal) return v.qualname;
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

/** Unpickles `data` (protocols 2-5, the opcodes state dicts use). Throws `PickleError`. */
export function unpickle(data: Uint8Array, source = 'data.pkl'): unknown {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8');
  let pos = 0;
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();
  let opPos = 0;

  const fail = (msg: string): never => {
    throw new PickleError(`${source}: ${msg} (at byte ${opPos})`);
  };
  const truncated = () => fail('truncated or corrupt: the pickle ends before its STOP opcode');
  const need = (n: number) => {
    if (pos + n > data.length) truncated();
    const p = pos;
    pos += n;
    return p;
  };
  const u8 = () => data[need(1)]!;
  const u16 = () => dv.getUint16(need(2), true);
  const u32 = () => dv.getUint32(need(4), true);
  const u64 = () => {
    const v = dv.getBigUint64(need(8), true);
    return v > BigInt(data.length) ? fail(`length ${v} runs past the end of the pickle`) : Number(v);
  };
  const str = (n: number) => utf8.decode(data.subarray(need(n), pos));
  const line = () => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) truncated();
    return str(end - pos + 1).slice(0, -1);
  };
  const pop = () => (stack.length ? stack.pop() : fail('stack underflow (corrupt pickle)'));
  const top = () => (stack.length ? stack[stack.length - 1] : fail('stack underflow (corrupt pickle)'));
  const popMark = () => {
    const items = stack;
    stack = marks.pop() ?? fail('MARK expected (corrupt pickle)');
    return items;
  };
  const long = (n: number) => {
    // little-endian two's complement
    const p = need(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[p + i]!);
    if (n > 0 && data[p + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const setItems = (target: unknown, kv: unknown[]) => {
    if (!(target instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    for (let i = 0; i + 1 < kv.length; i += 2) (target as Map<unknown, unknown>).set(kv[i], kv[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    if (!Array.isArray(target)) fail('APPEND(S) on something that is not a list');
    (target as unknown[]).push(...items);
  };
  const getMemo = (i: number) => (memo.has(i) ? memo.get(i) : fail(`memo entry ${i} is missing (corrupt pickle)`));

  for (;;) {
    opPos = pos;
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: need(8); break; // FRAME: a length hint only
      case 0x2e: return pop(); // STOP '.'
      case 0x28: marks.push(stack); stack = []; break; // MARK '('
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT '}'
      case 0x5d: stack.push([]); break; // EMPTY_LIST ']'
      case 0x29: stack.push([]); break; // EMPTY_TUPLE ')'
      case 0x4e: stack.push(null); break; // NONE 'N'
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(u8()); break; // BININT1 'K'
      case 0x4d: stack.push(u16()); break; // BININT2 'M'
      case 0x4a: stack.push(dv.getInt32(need(4), true)); break; // BININT 'J'
      case 0x8a: stack.push(long(u8())); break; // LONG1
      case 0x8b: stack.push(long(u32())); break; // LONG4
      case 0x47: stack.push(dv.getFloat64(need(8), false)); break; // BINFLOAT 'G' (big-endian)
      case 0x58: stack.push(str(u32())); break; // BINUNICODE 'X'
      case 0x8c: stack.push(str(u8())); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(str(u64())); break; // BINUNICODE8
      case 0x43: { const n = u8(); stack.push(data.slice(need(n), pos)); break; } // SHORT_BINBYTES 'C'
      case 0x42: { const n = u32(); stack.push(data.slice(need(n), pos)); break; } // BINBYTES 'B'
      case 0x74: { const t = popMark(); stack.push(t); break; } // TUPLE 't' (popMark replaces `stack`)
      case 0x6c: { const l = popMark(); stack.push(l); break; } // LIST 'l'
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); stack.push([pop(), b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); stack.push([pop(), b, c]); break; } // TUPLE3
      case 0x64: { const m = new Map(); setItems(m, popMark()); stack.push(m); break; } // DICT 'd'
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM 's'
      case 0x75: { const kv = popMark(); setItems(top(), kv); break; } // SETITEMS 'u'
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND 'a'
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS 'e'
      case 0x71: memo.set(u8(), top()); break; // BINPUT 'q'
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT 'r'
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: stack.push(getMemo(u8())); break; // BINGET 'h'
      case 0x6a: stack.push(getMemo(u32())); break; // LONG_BINGET 'j'
      case 0x30: pop(); break; // POP '0'
      case 0x31: popMark(); break; // POP_MARK '1'
      case 0x32: stack.push(top()); break; // DUP '2'
      case 0x63: { // GLOBAL 'c': "module\nname\n"
        const module = line();
        stack.push(resolveGlobal(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x51: stack.push(persistentLoad(pop())); break; // BINPERSID 'Q'
      case 0x52: { // REDUCE 'R': callable(*args)
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyGlobal) || !fn.call || !Array.isArray(args)) fail(`REDUCE on ${describe(fn)}, which is not callable`);
        stack.push((fn as PyGlobal).call!(args as unknown[]));
        break;
      }
      case 0x62: { // BUILD 'b': obj.__setstate__(state); only OrderedDict's attributes (e.g. `_metadata`) occur
        pop();
        if (!(top() instanceof Map)) fail(`BUILD on ${describe(top())}: only dicts may have state set`);
        break;
      }
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16)} (${JSON.stringify(String.fromCharCode(op))}): ` +
          `not something a state dict uses — the file is corrupt or holds other Python objects`);
    }
  }
}
