/**
 * Where kernel tables are kept between loads: a JSON file per adapter under the user's cache folder
 * in Node ($XDG_CACHE_HOME/efficienttam-webgpu/kernels, else ~/.cache/...), IndexedDB in a browser
 * (database 'efficienttam-webgpu', store 'kernel-tables'). Tables are looked up by their key (the
 * adapter and the library version, table.ts), so a table of another adapter or version is never
 * found; what is found is checked again before use.
 */
import type { TuningTable } from './table.js';

export interface TableStore {
  /** where (for messages) */
  readonly where: string;
  load(key: string): Promise<TuningTable | null>;
  save(table: TuningTable): Promise<void>;
}

/** A short stable name for a key: FNV-1a, 64 bits, in hex. */
export function keyHash(key: string): string {
  let h = 0xcbf29ce484222325n;
  const p = 0x100000001b3n, mask = (1n << 64n) - 1n;
  for (let i = 0; i < key.length; i++) h = ((h ^ BigInt(key.charCodeAt(i))) * p) & mask;
  return h.toString(16).padStart(16, '0');
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof (globalThis as { window?: unknown }).window === 'undefined';

/** JSON files in a folder (Node). */
export class FileTableStore implements TableStore {
  constructor(readonly where: string) {}

  /** The default folder: $XDG_CACHE_HOME or ~/.cache, then efficienttam-webgpu/kernels. */
  static async defaultFolder(): Promise<string> {
    const { homedir } = await import(/* @vite-ignore */ 'node:os');
    const { join } = await import(/* @vite-ignore */ 'node:path');
    const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
    return join(base, 'efficienttam-webgpu', 'kernels');
  }

  private async file(key: string): Promise<string> {
    const { join } = await import(/* @vite-ignore */ 'node:path');
    return join(this.where, `${keyHash(key)}.json`);
  }

  async load(key: string): Promise<TuningTable | null> {
    const { readFile } = await import(/* @vite-ignore */ 'node:fs/promises');
    try {
      const t = JSON.parse(await readFile(await this.file(key), 'utf8')) as TuningTable;
      return t.key === key ? t : null;
    } catch {
      return null; // absent or unreadable: tune again
    }
  }

  async save(table: TuningTable): Promise<void> {
    const { mkdir, writeFile, rename } = await import(/* @vite-ignore */ 'node:fs/promises');
    await mkdir(this.where, { recursive: true });
    const f = await this.file(table.key);
    const tmp = `${f}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(table, null, 1));
    await rename(tmp, f); // a concurrent reader sees the old file or the new one, never half of one
  }
}

/** IndexedDB (browsers). */
export class IndexedDbTableStore implements TableStore {
  readonly where = "IndexedDB 'efficienttam-webgpu' / 'kernel-tables'";

  private open(): Promise<IDBDatabase> {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open('efficienttam-webgpu', 1);
      req.onupgradeneeded = () => { req.result.createObjectStore('kernel-tables'); };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error ?? new Error('indexedDB.open failed'));
    });
  }

  private async tx<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest): Promise<T> {
    const db = await this.open();
    try {
      return await new Promise<T>((resolve, reject) => {
        const req = f(db.transaction('kernel-tables', mode).objectStore('kernel-tables'));
        req.onsuccess = () => resolve(req.result as T);
        req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
      });
    } finally {
      db.close();
    }
  }

  async load(key: string): Promise<TuningTable | null> {
    try {
      const t = await this.tx<TuningTable | undefined>('readonly', (s) => s.get(key));
      return t && t.key === key ? t : null;
    } catch {
      return null;
    }
  }

  async save(table: TuningTable): Promise<void> {
    await this.tx('readwrite', (s) => s.put(table, table.key));
  }
}

/** A store in memory (tests; pages that keep nothing). */
export class MemoryTableStore implements TableStore {
  readonly where = 'memory';
  readonly tables = new Map<string, TuningTable>();
  async load(key: string): Promise<TuningTable | null> {
    return this.tables.get(key) ?? null;
  }
  async save(table: TuningTable): Promise<void> {
    this.tables.set(table.key, structuredClone(table));
  }
}

/** The platform's store: files under the cache folder in Node, IndexedDB in a browser, else none. */
export async function defaultStore(): Promise<TableStore | null> {
  if (isNode) return new FileTableStore(await FileTableStore.defaultFolder());
  if (typeof indexedDB !== 'undefined') return new IndexedDbTableStore();
  return null;
}
