import type { Tensor } from '../gpu/tensor.js';

/**
 * Where layers get their parameters: by official name and expected shape. The weight loader
 * (src/io/weights.ts) implements it, collecting every missing or mis-shaped tensor into one error.
 */
export interface WeightSource {
  /** `allowF16`: the consumer's kernel also reads f16 (Linear and Conv2d weights; see io/weights.ts). */
  tensor(name: string, shape: readonly number[], opts?: { allowF16?: boolean }): Tensor;
}

/** Joins name parts the way PyTorch's state_dict does (`a.b.0.c`). */
export const join = (...parts: (string | number)[]): string => parts.filter((p) => p !== '').join('.');

/**
 * Runs `steps` in order on `x` (e.g. conv -> norm -> activation), releasing each intermediate
 * tensor once the next step has recorded its work; `x` itself is left to the caller.
 */
export function sequential(x: Tensor, steps: readonly ((t: Tensor) => Tensor)[]): Tensor {
  let h = x;
  for (const step of steps) {
    const next = step(h);
    if (h !== x) h.release();
    h = next;
  }
  return h;
}
