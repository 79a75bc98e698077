import type { GpuContext } from '../gpu/context.js';

/**
 * Families of interchangeable kernels. An operation that carries the time (matmul, the implicit-GEMM
 * convolution, attention, softmax, layer norm) has several kernels computing the same thing under
 * the same numerics contract (f32 accumulation, the same test tolerances), each shaped for a kind of
 * adapter: the ones shaped for lavapipe (a workgroup is a CPU thread, 8 invocations are one SIMD
 * register) and GPU-shaped ones (workgroup memory, 64-256 invocations). The wrapper of the operation
 * (linear, attention, ...) asks `choose` which one to run; the answer comes from the context's
 * kernel table (ctx.kernels, filled by src/tune from measurements on this adapter) or, for shapes
 * the table does not cover, from the family's default for the adapter kind.
 *
 * `C` is one call as the choice sees it (sizes and variant), a plain JSON-serialisable object: the
 * tuner records calls while tracing a model and replays them with each candidate.
 */
export interface KernelFamily<C> {
  /** the operation (table key) */
  readonly op: string;
  /** every candidate, in a fixed order */
  readonly candidates: readonly string[];
  /** the candidates that can run this call on this device (never empty) */
  eligible(ctx: GpuContext, call: C): string[];
  /** the table's key for calls like this one: calls of one class share a choice */
  classOf(call: C): string;
  /** the choice without a table entry: current kernels on software adapters, GPU-shaped ones elsewhere */
  fallback(ctx: GpuContext, call: C): string;
  /** floating-point operations of the call (for GFLOP/s) */
  flops(call: C): number;
  /**
   * For the tuner and the benchmarks: inputs of the call's sizes (random data) and a function that
   * records the call with a given candidate (nothing is read back).
   */
  instance(ctx: GpuContext, call: C): { run(candidate: string): void; release(): void };
}

/** Thrown for a forced candidate that does not exist or cannot run the call. */
export class KernelChoiceError extends Error {
  override name = 'KernelChoiceError';
}

/**
 * The candidate that runs this call: `forced` (tests, benchmarks, the tuner) when given, else the
 * context's table entry for the call's class when it is eligible, else the family's default.
 */
export function choose<C>(ctx: GpuContext, family: KernelFamily<C>, call: C, forced?: string): string {
  if (forced !== undefined) {
    if (!family.candidates.includes(forced)) {
      throw new KernelChoiceError(`${family.op}: no candidate '${forced}' (candidates: ${family.candidates.join(', ')})`);
    }
    const el = family.eligible(ctx, call);
    if (!el.includes(forced)) {
      throw new KernelChoiceError(`${family.op}: candidate '${forced}' cannot run ${family.classOf(call)} on this device (eligible: ${el.join(', ')})`);
    }
    return forced;
  }
  ctx.kernels.recorder?.(family.op, call);
  const t = ctx.kernels.get(family.op, family.classOf(call));
  if (t !== undefined && family.eligible(ctx, call).includes(t)) return t;
  return family.fallback(ctx, call);
}

/** Whether the families' defaults are those of a software adapter (ctx.kernels.defaults, else the adapter's kind). */
export function softwareDefaults(ctx: GpuContext): boolean {
  const d = ctx.kernels.defaults;
  return d === 'auto' ? !!ctx.adapter.software : d === 'software';
}

/** Size bucket for shape classes: the power of 4 at or below n (1, 4, 16, 64, 256, 1024, ...). */
export function bucket4(n: number): number {
  let b = 1;
  while (b * 4 <= n) b *= 4;
  return b;
}

/** Seeded uniform values in [-scale, scale) for the tuner's inputs. */
export function randomValues(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}
