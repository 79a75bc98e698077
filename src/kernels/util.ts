/** Small helpers shared by the kernel wrappers. */

/** Largest workgroup count in one dimension that every WebGPU device accepts. */
export const MAX_GROUPS = 65535;

/**
 * A 1-D grid of `groups` workgroups laid out as x * y (y > 1 only past 65535), and the WGSL
 * expression that recovers the flat workgroup index from `@builtin(workgroup_id) wid`.
 */
export function grid1d(groups: number): { workgroups: [number, number]; } {
  if (groups <= MAX_GROUPS) return { workgroups: [Math.max(1, groups), 1] };
  const y = Math.ceil(groups / MAX_GROUPS);
  return { workgroups: [Math.ceil(groups / y), y] };
}

/** WGSL literal for an f32 constant (always with a decimal point or exponent). */
export function f32lit(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`f32lit: ${v}`);
  const s = String(v);
  return /[.eE]/.test(s) ? s : s + '.0';
}

export function assertShape(name: string, shape: readonly number[], expected: readonly (number | null)[]): void {
  const ok = shape.length === expected.length && expected.every((e, i) => e === null || e === shape[i]);
  if (!ok) throw new Error(`${name}: shape [${shape}] does not match [${expected.map((e) => e ?? '*')}]`);
}

/**
 * WGSL opening of a flat element-wise kernel: `fn main` over workgroups of `wg` invocations laid
 * out by grid1d, defining `i` (the flat element index) and returning past `n`: a number (written
 * into the WGSL) or a WGSL u32 expression such as a uniform's field (one pipeline for every size).
 * The caller closes the function body.
 */
export const header1d = (n: number | string, wg = 256): string => `
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${wg}u + lid;
  if (i >= ${typeof n === 'number' ? `${n}u` : n}) { return; }`;

/**
 * A WGSL generator made to return the same string object for the same arguments. Kernels are
 * recorded hundreds of times per frame; building a few kilobytes of text each time, and hashing a
 * fresh string for the context's pipeline lookup, cost more CPU than recording the dispatch. A
 * memoised generator builds each variant once, and V8 keeps a string's hash with the string.
 * Arguments must be JSON-serialisable (numbers, booleans, strings, plain objects).
 */
export function memoWGSL<A extends unknown[]>(build: (...args: A) => string): (...args: A) => string {
  const cache = new Map<string, string>();
  return (...args: A): string => {
    const key = JSON.stringify(args);
    let wgsl = cache.get(key);
    if (wgsl === undefined) {
      wgsl = build(...args);
      cache.set(key, wgsl);
    }
    return wgsl;
  };
}
