import type { GpuContext } from './context.js';

/** Element type of a tensor on the GPU. Activations are f32; weights may be f16 (see weights/). */
export type DType = 'f32' | 'f16';

export const bytesPerElement = (dtype: DType): number => (dtype === 'f16' ? 2 : 4);

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/**
 * A dense, row-major array in one GPU buffer. Shapes are written the way the reference writes them
 * (activations in this library are channels-last: [H, W, C] or [tokens, C]; weights keep PyTorch's
 * layout, e.g. Linear [out, in], Conv2d [out, in, kh, kw]).
 *
 * A tensor owns its buffer unless it is a view (`reshape`); `release()` hands an owned buffer back
 * to the context's pool for reuse by a later tensor of the same byte size.
 */
export class Tensor {
  private released = false;

  constructor(
    readonly ctx: GpuContext,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType = 'f32',
    readonly owner = true,
  ) {}

  get size(): number {
    return numel(this.shape);
  }

  get byteLength(): number {
    return this.size * bytesPerElement(this.dtype);
  }

  /** The same data under another shape with as many elements (no copy; the view does not own it). */
  reshape(shape: readonly number[]): Tensor {
    const n = numel(shape);
    if (n !== this.size) throw new Error(`reshape: [${this.shape}] has ${this.size} elements, [${shape}] has ${n}`);
    return new Tensor(this.ctx, this.buffer, shape, this.dtype, false);
  }

  /** Reads the data back to the CPU as f32 (f16 is widened). Flushes pending GPU work. */
  read(): Promise<Float32Array> {
    return this.ctx.read(this);
  }

  /** Returns the buffer to the pool. Safe to call after GPU work using it has been recorded. */
  release(): void {
    if (!this.owner || this.released) return;
    this.released = true;
    this.ctx.recycle(this.buffer);
  }

  get isReleased(): boolean {
    return this.released;
  }

  toString(): string {
    return `Tensor<${this.dtype}>[${this.shape.join(', ')}]`;
  }
}
