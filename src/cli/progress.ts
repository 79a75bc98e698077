/**
 * A progress bar on stderr: `track [######------] 42/200 frames  3.1 fps  1:02 left`.
 * On a terminal it redraws one line (at most 10 times a second); otherwise (a log file, a pipe)
 * it prints a plain line every 10% or every 10 seconds. Silent when disabled (--quiet).
 */

export const formatDuration = (s: number): string => {
  if (!Number.isFinite(s)) return '?';
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}` : `${m}:${String(sec).padStart(2, '0')}`;
};

export const formatBytes = (n: number): string =>
  n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 2 ** 10).toFixed(1)} KiB`;

export interface ProgressOptions {
  enabled: boolean;
  /** what is counted ("frames", "MiB") */
  unit: string;
  stream?: NodeJS.WriteStream;
  /** show a rate (units per second) and the time left (default true) */
  rate?: boolean;
}

export class Progress {
  private done = 0;
  private readonly t0 = performance.now();
  /** recent (time, done) samples, for the rate */
  private readonly window: [number, number][] = [];
  private lastDraw = 0;
  private lastLogged = -1;
  private lastLogTime = 0;
  private drawn = false;
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;

  constructor(private readonly label: string, private readonly total: number, private readonly o: ProgressOptions) {
    this.stream = o.stream ?? process.stderr;
    this.tty = !!this.stream.isTTY;
    this.window.push([this.t0, 0]);
  }

  /** units per second over the recent samples (the last ~20) */
  get rate(): number {
    const [t0, d0] = this.window[0]!;
    const [t1, d1] = this.window[this.window.length - 1]!;
    return t1 > t0 ? ((d1 - d0) * 1000) / (t1 - t0) : 0;
  }

  /** seconds since the start */
  get elapsed(): number {
    return (performance.now() - this.t0) / 1000;
  }

  update(done: number): void {
    this.done = done;
    const now = performance.now();
    this.window.push([now, done]);
    if (this.window.length > 21) this.window.shift();
    if (!this.o.enabled) return;
    if (this.tty) {
      if (now - this.lastDraw < 100 && done < this.total) return;
      this.lastDraw = now;
      this.stream.write(`\r${this.line()}\x1b[K`);
      this.drawn = true;
    } else {
      const step = Math.floor((done * 10) / Math.max(1, this.total));
      if (step !== this.lastLogged || now - this.lastLogTime > 10_000) {
        this.lastLogged = step;
        this.lastLogTime = now;
        this.stream.write(`${this.line()}\n`);
      }
    }
  }

  tick(n = 1): void {
    this.update(this.done + n);
  }

  line(): string {
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 0;
    const width = 24;
    const full = Math.round(frac * width);
    const bar = `[${'#'.repeat(full)}${'-'.repeat(width - full)}]`;
    let s = `${this.label} ${bar} ${this.done}/${this.total} ${this.o.unit}`;
    if (this.o.rate ?? true) {
      const r = this.rate;
      const left = r > 0 ? (this.total - this.done) / r : NaN;
      s += `  ${r >= 10 ? r.toFixed(0) : r.toFixed(2)} ${this.o.unit === 'frames' ? 'fps' : `${this.o.unit}/s`}`;
      s += this.done >= this.total ? `  ${formatDuration(this.elapsed)}` : `  ${formatDuration(left)} left`;
    }
    return s;
  }

  /** Ends the line (the bar stays on screen with its last state). */
  finish(): void {
    if (!this.o.enabled) return;
    if (this.tty) {
      this.stream.write(`\r${this.line()}\x1b[K\n`);
    } else if (this.lastLogged !== 10) {
      this.stream.write(`${this.line()}\n`);
    }
    this.drawn = false;
  }

  /** Clears the bar to print a message, which `message` then writes. */
  message(text: string): void {
    if (this.o.enabled && this.tty && this.drawn) this.stream.write('\r\x1b[K');
    this.stream.write(`${text}\n`);
    this.lastDraw = 0;
  }
}
