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
 *   dict / collections.OrderedDict       -> PyDict (a Map made on its first item)
 *   list / tuple                         -> array
 *   int (BININT*, LONG1/4) / float / str -> number (bigint beyond 2^53; PyLongTooLarge beyond
 *                                           64 bits) / number / string
 *   persistent id ('storage', torch.FloatStorage, key, location, numel) -> TorchStorage
 *   torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
 *                                        -> TorchTensor (a view; nothing is read yet)
 *   torch._utils._rebuild_parameter(tensor, requires_grad, hooks) -> the same TorchTensor
 *
 * The file is untrusted, so its cost is bounded by its size:
 *   - time: every opcode does work linear in the bytes it consumes or the items it moves (a
 *     LONG4 of n bytes is scanned once; no BigInt arithmetic on more than 8 bytes);
 *   - memory: every object the pickle makes is charged at an estimate of what it holds in the
 *     JS heap, and the total may not exceed `MEMORY_PER_BYTE` bytes per byte of pickle (plus a
 *     floor): 20 MB of EMPTY_DICT opcodes stop at once instead of making 20 million Maps;
 *   - nothing recurses over the pickled objects (nesting depth and cycles are free): error
 *     messages describe values to a fixed depth and length.
 * The work is done in steps (`Unpickler.step`), so an async caller can yield to the event loop
 * between them.
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
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

/** An integer of more than 64 bits: a state dict never needs its value, so only its size is kept. */
export class PyLongTooLarge {
  constructor(readonly bytes: number) {}
}

/** A Python dict: insertion-ordered, its Map made only when the first item is set (an empty Map costs ~200 bytes). */
export class PyDict {
  private map: Map<unknown, unknown> | null = null;
  get size(): number {
    return this.map?.size ?? 0;
  }
  get(key: unknown): unknown {
    return this.map?.get(key);
  }
  set(key: unknown, value: unknown): void {
    (this.map ??= new Map()).set(key, value);
  }
  keys(): IterableIterator<unknown> {
    return (this.map ?? EMPTY).keys();
  }
  entries(): IterableIterator<[unknown, unknown]> {
    return (this.map ?? EMPTY).entries();
  }
}
const EMPTY = new Map<unknown, unknown>();

/** torch's storage classes, as the pickle names them, and the dtype of their elements (no prototype: `constructor` is not a class). */
const STORAGE_DTYPES = new Map<string, SafetensorsDType>([
  ['FloatStorage', 'F32'], ['HalfStorage', 'F16'], ['BFloat16Storage', 'BF16'], ['DoubleStorage', 'F64'],
  ['LongStorage', 'I64'], ['IntStorage', 'I32'], ['ShortStorage', 'I16'], ['CharStorage', 'I8'],
  ['ByteStorage', 'U8'], ['BoolStorage', 'BOOL'],
  ['UntypedStorage', 'U8'], // raw bytes (torch >= 2.0 when an untyped storage is saved directly)
]);

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
  return new TorchTensor(storage, offset, size, stride); // the pickled lists, not copies: nothing changes them
}

function rebuildParameter(args: unknown[]): TorchTensor {
  // (data, requires_grad, backward_hooks)
  if (!(args[0] instanceof TorchTensor)) throw new PickleError('torch._utils._rebuild_parameter: expected a tensor');
  return args[0];
}

function orderedDict(args: unknown[]): PyDict {
  if (args.length !== 0) throw new PickleError('collections.OrderedDict: only the empty constructor is accepted');
  return new PyDict();
}

/** The whitelist, by qualified name (a Map: no name reaches Object.prototype). */
const GLOBALS = new Map<string, PyGlobal>([
  ['collections.OrderedDict', new PyGlobal('collections.OrderedDict', undefined, orderedDict)],
  ['torch._utils._rebuild_tensor_v2', new PyGlobal('torch._utils._rebuild_tensor_v2', undefined, rebuildTensorV2)],
  ['torch._utils._rebuild_parameter', new PyGlobal('torch._utils._rebuild_parameter', undefined, rebuildParameter)],
  ...[...STORAGE_DTYPES].map(([name, dtype]) => [`torch.${name}`, new PyGlobal(`torch.${name}`, dtype)] as const),
]);

function resolveGlobal(module: string, name: string): PyGlobal {
  const q = `${module}.${name}`;
  const g = GLOBALS.get(q);
  if (g) return g;
  throw new PickleError(`refused to load the global ${quote(q)}: only tensors and state-dict containers are accepted ` +
    `(allowed: collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, ` +
    `torch.*Storage); the file may be malicious, or holds Python objects other than a state dict`);
}

/** BINPERSID's argument: torch's ('storage', storage_class, key, location, numel). */
function persistentLoad(pid: unknown): TorchStorage {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length !== 5) {
    throw new PickleError(`unsupported persistent id ${describe(pid)}: expected ('storage', type, key, location, numel)`);
  }
  const [, type, key, location, numel] = pid;
  if (!(type instanceof PyGlobal) || !type.storageDType || typeof key !== 'string' || typeof location !== 'string' || !isInt(numel) || numel < 0) {
    throw new PickleError(`malformed storage persistent id ${describe(pid)}`);
  }
  return new TorchStorage(type.storageDType, key, location, numel);
}

/** A string quoted for a message, cut to `max` characters. */
const quote = (s: string, max = 80): string => JSON.stringify(s.length > max ? s.slice(0, max) + '...' : s);

/**
 * A short description of a pickled value for error messages: at most `depth` levels and a few
 * items per level, so a deep, huge or cyclic value costs a bounded amount.
 */
export function describe(v: unknown, depth = 3): string {
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'bigint') return v.toString();
  if (v === null) return 'None';
  if (v instanceof PyLongTooLarge) return `<an integer of ${v.bytes} bytes>`;
  if (v instanceof PyGlobal) return v.qualname;
  if (v instanceof TorchStorage) return `<${v.dtype} storage ${quote(v.key)}>`;
  if (v instanceof TorchTensor) return `<tensor ${dims(v.shape)}>`;
  if (v instanceof Uint8Array) return `<${v.byteLength} bytes>`;
  if (Array.isArray(v)) {
    if (depth <= 0) return `(...${v.length} items)`;
    const items = v.slice(0, 6).map((x) => describe(x, depth - 1));
    return `(${items.join(', ')}${v.length > 6 ? `, ...${v.length - 6} more` : ''})`;
  }
  if (v instanceof PyDict) return `{...${v.size} items}`;
  if (typeof v === 'object') return '<object>';
  return String(v);
}

/** A shape or stride for a message: `[a, b, c]`, at most 8 numbers. */
export const dims = (xs: readonly number[]): string =>
  `[${xs.slice(0, 8).join(', ')}${xs.length > 8 ? `, ... (${xs.length} in all)` : ''}]`;

export interface UnpickleStats {
  /** opcodes executed */
  opcodes: number;
  /** estimated bytes of the objects made (see MEMORY_PER_BYTE) */
  memory: number;
}

/** Objects a pickle makes may hold at most this many (estimated) bytes per byte of pickle... */
export const MEMORY_PER_BYTE = 10;
/** ...plus this much. A state dict pickled by torch.save needs about 8 per byte. */
export const MEMORY_FLOOR = 4 << 20;

/** Estimated heap bytes of what an opcode makes (V8: an array ~40 + 8 per item, a string ~24 + its length, a Map entry ~30, an array slot 8; both more while they grow). */
const COST = { array: 40, item: 8, object: 48, string: 24, bytes: 96, memo: 64, memoDense: 32, mark: 48, slot: 32 };
/** Stack depth within which pushes are not charged. */
const FREE_STACK_DEPTH = 4096;
/** Memo indices below this are kept in an array. */
const MEMO_ARRAY_LIMIT = 1 << 24;

/** A pickle being read, one slice of opcodes at a time. */
export interface Unpickler {
  /** Runs at most `ops` opcodes; true when the pickle has reached STOP (then `result` is set). Throws `PickleError`. */
  step(ops: number): boolean;
  readonly result: unknown;
  readonly stats: UnpickleStats;
}

/** Starts reading a pickle (protocols 2-5, the opcodes state dicts use). */
export function createUnpickler(data: Uint8Array, source = 'data.pkl'): Unpickler {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8');
  let pos = 0;
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  // The memo: indices are 0, 1, 2, ... in files from torch.save (a dense array, ~10 bytes an entry);
  // any index a crafted file gives still works (a sparse array, or a Map beyond array indices).
  const memo: unknown[] = [];
  const farMemo = new Map<number, unknown>();
  let memoCount = 0;
  let opPos = 0;
  let done = false;
  let result: unknown;
  const stats: UnpickleStats = { opcodes: 0, memory: 0 };
  const memoryLimit = MEMORY_FLOOR + MEMORY_PER_BYTE * data.byteLength;

  const fail = (msg: string): never => {
    throw new PickleError(`${source}: ${msg} (at byte ${opPos})`);
  };
  const charge = (bytes: number) => {
    if (stats.memory + bytes <= memoryLimit) stats.memory += bytes;
    else {
      fail(`the pickle makes more objects than a state dict of its size could (over ${memoryLimit} bytes of them from ` +
        `${data.byteLength} bytes of pickle): the file is corrupt or crafted`);
    }
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
    const p = need(8);
    const hi = dv.getUint32(p + 4, true);
    const v = hi * 2 ** 32 + dv.getUint32(p, true);
    return v > data.length - pos ? fail(`length ${hi ? `${hi} * 2^32 + ${dv.getUint32(p, true)}` : v} runs past the end of the pickle`) : v;
  };
  const str = (n: number) => {
    const p = need(n);
    charge(COST.string + n);
    return utf8.decode(data.subarray(p, pos));
  };
  const line = () => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) truncated();
    return str(end - pos + 1).slice(0, -1);
  };
  // Slots of a deep stack are charged too (a 1-byte opcode pushes 8 bytes of reference); torch's
  // pickles stay far below the depth (SETITEMS batches of 1,000 pairs).
  const push = (v: unknown) => {
    if (stack.length >= FREE_STACK_DEPTH) charge(COST.slot);
    stack.push(v);
  };
  const pop = () => (stack.length ? stack.pop() : fail('stack underflow (corrupt pickle)'));
  const top = () => (stack.length ? stack[stack.length - 1] : fail('stack underflow (corrupt pickle)'));
  const popMark = () => {
    const items = stack;
    stack = marks.pop() ?? fail('MARK expected (corrupt pickle)');
    return items;
  };
  const array = (items: unknown[]) => {
    charge(COST.array + COST.item * items.length);
    return items;
  };
  /** A little-endian two's complement integer of n bytes, in time linear in n. */
  const long = (n: number): number | bigint | PyLongTooLarge => {
    const p = need(n);
    if (n === 0) return 0;
    // Drop the high bytes that only extend the sign: 0x00 above a byte < 0x80, 0xff above one >= 0x80.
    const ext = data[p + n - 1]! & 0x80 ? 0xff : 0x00;
    let m = n;
    while (m > 1 && data[p + m - 1] === ext && (data[p + m - 2]! & 0x80) === (ext & 0x80)) m--;
    if (m > 8) {
      charge(COST.object);
      return new PyLongTooLarge(n);
    }
    let v = 0n;
    for (let i = m - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[p + i]!);
    if (data[p + m - 1]! & 0x80) v -= 1n << BigInt(8 * m);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const setItems = (target: unknown, kv: unknown[], from = 0) => {
    if (!(target instanceof PyDict)) fail(`SETITEM(S) on ${describe(target)}, which is not a dict`);
    if ((kv.length - from) % 2) fail('SETITEMS with an odd number of items (corrupt pickle)');
    charge(COST.memo * ((kv.length - from) / 2));
    for (let i = from; i + 1 < kv.length; i += 2) (target as PyDict).set(kv[i], kv[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    if (!Array.isArray(target)) fail(`APPEND(S) on ${describe(target)}, which is not a list`);
    charge(COST.item * items.length);
    for (const x of items) (target as unknown[]).push(x); // not push(...items): no limit on the count
  };
  const setMemo = (i: number) => {
    const v = top(); // never undefined: nothing pushed is
    const far = i >= MEMO_ARRAY_LIMIT;
    if ((far ? farMemo.get(i) : i < memo.length ? memo[i] : undefined) === undefined) {
      charge(far || i > memo.length ? COST.memo : COST.memoDense);
      memoCount++;
    }
    if (far) farMemo.set(i, v);
    else memo[i] = v;
  };
  const getMemo = (i: number) => {
    const v = i >= MEMO_ARRAY_LIMIT ? farMemo.get(i) : i < memo.length ? memo[i] : undefined;
    return v !== undefined ? v : fail(`memo entry ${i} is missing (corrupt pickle)`);
  };

  const step = (ops: number): boolean => {
    if (done) return true;
    for (let k = 0; k < ops; k++) {
      opPos = pos;
      stats.opcodes++;
      const op = u8();
      switch (op) {
        case 0x80: u8(); break; // PROTO
        case 0x95: need(8); break; // FRAME: a length hint only
        case 0x2e: result = pop(); done = true; return true; // STOP '.'
        case 0x28: charge(COST.mark); marks.push(stack); stack = []; break; // MARK '('
        case 0x7d: charge(COST.object); push(new PyDict()); break; // EMPTY_DICT '}'
        case 0x5d: push(array([])); break; // EMPTY_LIST ']'
        case 0x29: push(array([])); break; // EMPTY_TUPLE ')'
        case 0x4e: push(null); break; // NONE 'N'
        case 0x88: push(true); break; // NEWTRUE
        case 0x89: push(false); break; // NEWFALSE
        case 0x4b: push(u8()); break; // BININT1 'K'
        case 0x4d: push(u16()); break; // BININT2 'M'
        case 0x4a: push(dv.getInt32(need(4), true)); break; // BININT 'J'
        case 0x8a: push(long(u8())); break; // LONG1
        case 0x8b: push(long(u32())); break; // LONG4
        case 0x47: charge(COST.string); push(dv.getFloat64(need(8), false)); break; // BINFLOAT 'G' (big-endian)
        case 0x58: push(str(u32())); break; // BINUNICODE 'X'
        case 0x8c: push(str(u8())); break; // SHORT_BINUNICODE
        case 0x8d: push(str(u64())); break; // BINUNICODE8
        case 0x43: { const p = need(u8()); charge(COST.bytes + pos - p); push(data.slice(p, pos)); break; } // SHORT_BINBYTES 'C'
        case 0x42: { const p = need(u32()); charge(COST.bytes + pos - p); push(data.slice(p, pos)); break; } // BINBYTES 'B'
        case 0x74: push(array(popMark())); break; // TUPLE 't' (popMark replaces `stack`)
        case 0x6c: push(array(popMark())); break; // LIST 'l'
        case 0x85: push(array([pop()])); break; // TUPLE1
        case 0x86: { const b = pop(); push(array([pop(), b])); break; } // TUPLE2
        case 0x87: { const c = pop(); const b = pop(); push(array([pop(), b, c])); break; } // TUPLE3
        case 0x64: { charge(COST.object); const d = new PyDict(); setItems(d, popMark()); push(d); break; } // DICT 'd'
        case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM 's'
        case 0x75: { const kv = popMark(); setItems(top(), kv); break; } // SETITEMS 'u'
        case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND 'a'
        case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS 'e'
        case 0x71: setMemo(u8()); break; // BINPUT 'q'
        case 0x72: setMemo(u32()); break; // LONG_BINPUT 'r'
        case 0x94: setMemo(memoCount); break; // MEMOIZE
        case 0x68: push(getMemo(u8())); break; // BINGET 'h'
        case 0x6a: push(getMemo(u32())); break; // LONG_BINGET 'j'
        case 0x30: pop(); break; // POP '0'
        case 0x31: popMark(); break; // POP_MARK '1'
        case 0x32: push(top()); break; // DUP '2'
        case 0x63: { // GLOBAL 'c': "module\nname\n"
          const module = line();
          push(resolveGlobal(module, line()));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = pop();
          const module = pop();
          if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
          push(resolveGlobal(module as string, name as string));
          break;
        }
        case 0x51: charge(COST.object); push(persistentLoad(pop())); break; // BINPERSID 'Q'
        case 0x52: { // REDUCE 'R': callable(*args)
          const args = pop();
          const fn = pop();
          if (!(fn instanceof PyGlobal) || !fn.call || !Array.isArray(args)) fail(`REDUCE on ${describe(fn)}, which is not callable`);
          // A call reads its arguments and their lists (a tensor's size and stride); the same ones can be
          // fetched from the memo for any number of calls, so each call is charged for what it reads.
          const a = args as unknown[];
          charge(COST.object + COST.item * a.length);
          let inner = 0;
          for (const x of a) if (Array.isArray(x)) inner += x.length;
          charge(COST.item * inner);
          push((fn as PyGlobal).call!(a));
          break;
        }
        case 0x62: { // BUILD 'b': obj.__setstate__(state); only OrderedDict's attributes (e.g. `_metadata`) occur
          pop();
          if (!(top() instanceof PyDict)) fail(`BUILD on ${describe(top())}: only dicts may have state set`);
          break;
        }
        default:
          fail(`unsupported pickle opcode 0x${op.toString(16)} (${JSON.stringify(String.fromCharCode(op))}): ` +
            `not something a state dict uses — the file is corrupt or holds other Python objects`);
      }
    }
    return false;
  };

  const run = (ops: number): boolean => {
    try {
      return step(ops);
    } catch (e) {
      // A PickleError thrown by a reconstructor (no position of its own) gets the file and the byte.
      if (e instanceof PickleError && !e.message.startsWith(`${source}: `)) e.message = `${source}: ${e.message} (at byte ${opPos})`;
      throw e;
    }
  };

  return { step: run, get result() { return result; }, stats };
}

/** Unpickles `data` in one go. Throws `PickleError`. */
export function unpickle(data: Uint8Array, source = 'data.pkl'): unknown {
  const u = createUnpickler(data, source);
  while (!u.step(1 << 20));
  return u.result;
}
