/**
 * The checks of prompts shared by the image and the video predictor, made before any GPU work:
 * a prompt either is one the model can use, or gives a PromptError that names the prompt and what
 * is wrong with it (and the predictor's state is unchanged).
 *
 *   point   [x, y], finite, on the image: 0 <= x <= width, 0 <= y <= height (pixel coordinates,
 *           the right and bottom edges included)
 *   label   1 (foreground) or 0 (background)
 *   box     [x0, y0, x1, y1], corners on the image, x0 < x1 and y0 < y1 (no reversed or empty box)
 *   object  an integer id (video)
 *   mask    low-res logits: any array of finite numbers (number[], Float32Array, Float64Array...)
 *           of a whole number of planes
 */

/** A prompt (point, label, box, object id or mask input) that the predictors cannot use. */
export class PromptError extends Error {
  override name = 'PromptError';
}

const isNum = (v: unknown): v is number => typeof v === 'number';

/** Checks one point (index i) of a prompt on a width x height image; returns it. */
export function checkPoint(who: string, p: unknown, i: number, width: number, height: number, what = `point ${i}`): [number, number] {
  if (!isArrayLike(p) || p.length !== 2 || !isNum(p[0]) || !isNum(p[1])) throw new PromptError(`${who}: ${what} is not [x, y]`);
  const x = p[0], y = p[1];
  if (!Number.isFinite(x) || !Number.isFinite(y)) throw new PromptError(`${who}: ${what} (${x}, ${y}) is not finite`);
  if (x < 0 || y < 0 || x > width || y > height) {
    throw new PromptError(`${who}: ${what} (${x}, ${y}) is outside the ${width}x${height} image`);
  }
  return [x, y];
}

/** Checks the label of point i: 1 (foreground) or 0 (background). */
export function checkLabel(who: string, l: unknown, i: number): 0 | 1 {
  if (l !== 0 && l !== 1) throw new PromptError(`${who}: label ${String(l)} of point ${i} is not 0 or 1`);
  return l;
}

/** Checks box i [x0, y0, x1, y1]: corners on the image, x0 < x1 and y0 < y1. */
export function checkBox(who: string, b: unknown, i: number, width: number, height: number): [number, number, number, number] {
  if (!isArrayLike(b) || b.length !== 4 || !Array.from(b).every(isNum)) throw new PromptError(`${who}: box ${i} is not [x0, y0, x1, y1]`);
  const [x0, y0] = checkPoint(who, [b[0], b[1]], i, width, height, `box ${i} corner`);
  const [x1, y1] = checkPoint(who, [b[2], b[3]], i, width, height, `box ${i} corner`);
  if (x1 < x0 || y1 < y0) throw new PromptError(`${who}: box ${i} [${x0}, ${y0}, ${x1}, ${y1}] has x1 < x0 or y1 < y0`);
  if (x1 === x0 || y1 === y0) throw new PromptError(`${who}: box ${i} [${x0}, ${y0}, ${x1}, ${y1}] is empty (zero width or height)`);
  return [x0, y0, x1, y1];
}

/** Checks points and their labels (same count, each valid); returns them as flat [x, y, ...] and labels. */
export function checkPoints(who: string, points: unknown, labels: unknown, width: number, height: number): { xy: number[]; labels: (0 | 1)[] } {
  if (!isArrayLike(points) || !isArrayLike(labels)) throw new PromptError(`${who}: points and labels must be arrays`);
  if (points.length !== labels.length) throw new PromptError(`${who}: ${points.length} points but ${labels.length} labels`);
  const xy: number[] = [], ls: (0 | 1)[] = [];
  for (let i = 0; i < points.length; i++) {
    xy.push(...checkPoint(who, points[i], i, width, height));
    ls.push(checkLabel(who, labels[i], i));
  }
  return { xy, labels: ls };
}

/** Checks an object id (video): an integer. */
export function checkObjectId(who: string, id: unknown): number {
  if (typeof id !== 'number' || !Number.isSafeInteger(id)) throw new PromptError(`${who}: object id ${String(id)} is not an integer`);
  return id;
}

/**
 * A mask prompt as f32: `data` is any array of numbers (number[], any typed array) holding a whole
 * number (>= 1) of planes of `planeSize` values, every one finite. Returns the planes' count and data.
 */
export function checkMaskInput(who: string, data: unknown, planeSize: number, side: string): { planes: number; data: Float32Array } {
  if (!isArrayLike(data) || typeof data === 'string') throw new PromptError(`${who}: maskInput is not an array of numbers`);
  const n = data.length;
  const planes = n / planeSize;
  if (!Number.isInteger(planes) || planes < 1) {
    throw new PromptError(`${who}: maskInput has ${n} values; expected 1 or B planes of ${side} (${planeSize} values each)`);
  }
  const out = data instanceof Float32Array ? data : new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = data[i];
    // finite, and finite as f32 (1e39 is not)
    if (typeof v !== 'number' || !Number.isFinite(Math.fround(v))) throw new PromptError(`${who}: maskInput value ${i} (${String(v)}) is not a finite f32 number`);
    if (out !== data) out[i] = v;
  }
  return { planes, data: out };
}

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { length?: unknown }).length === 'number';
}
