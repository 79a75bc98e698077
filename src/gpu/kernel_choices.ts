/**
 * Per-context kernel settings, read by the kernel wrappers at dispatch: which candidate kernel
 * runs each tuned operation for each shape class (filled by src/tune from a stored or freshly
 * measured table; empty means each family's default for the adapter kind), the f16 compute
 * settings (`precision: 'f16'`), and a recorder of calls used to find the shapes a model runs.
 * Model code never sees any of this: it calls linear, attention, ... as before.
 */

/** Where half precision is used (precision 'f16'); everything false is the f32 default. */
export interface F16Settings {
  /** linear / conv with an f16 weight: the activation is rounded to f16 too (f32 accumulation) */
  matmul: boolean;
  /** attention: q, k and v rounded to f16 (scores, softmax and accumulation in f32) */
  attention: boolean;
}

export class KernelChoices {
  private readonly table = new Map<string, string>();
  /** where the current choices came from ('defaults', 'tuned', 'stored table', 'imported table', ...) */
  source = 'defaults';
  /** f16 compute (precision 'f16'); off by default */
  f16: F16Settings = { matmul: false, attention: false };
  /** called with each tuned operation's call while set (the tuner's shape trace) */
  recorder: ((op: string, call: unknown) => void) | null = null;
  /**
   * Which defaults the families use where the table has no entry: those of the adapter's kind
   * ('auto'), or those of a GPU / a software adapter whatever the adapter is (tests and
   * benchmarks run the GPU-shaped defaults on lavapipe this way).
   */
  defaults: 'auto' | 'gpu' | 'software' = 'auto';

  private static key(op: string, cls: string): string {
    return `${op}\u0000${cls}`;
  }

  /** The chosen candidate of `op` for this shape class, if the table has one. */
  get(op: string, cls: string): string | undefined {
    return this.table.get(KernelChoices.key(op, cls));
  }

  set(op: string, cls: string, candidate: string): void {
    this.table.set(KernelChoices.key(op, cls), candidate);
  }

  /** Back to every family's default. */
  clear(source = 'defaults'): void {
    this.table.clear();
    this.source = source;
  }

  get size(): number {
    return this.table.size;
  }

  /** [op, shape class, candidate] of every entry. */
  entries(): [string, string, string][] {
    return [...this.table].map(([k, c]) => {
      const [op, cls] = k.split('\u0000') as [string, string];
      return [op, cls, c];
    });
  }
}
