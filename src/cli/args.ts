/**
 * Command-line parsing for `etam`: options declared per subcommand (flags, values, repeated
 * values), `--name value` and `--name=value`, `--` ends the options. Mistakes become a CliError
 * with a message that says what to type instead.
 */

/** An error the person at the terminal can act on; printed without a stack trace. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    /** 2: the command line is wrong (usage); 1: the job failed */
    readonly exitCode: 1 | 2 = 1,
    /** the subcommand whose `--help` to point at */
    readonly command?: string,
  ) {
    super(message);
  }
}

export const usageError = (command: string, message: string): CliError => new CliError(message, 2, command);

export interface OptionSpec {
  /** long name without the dashes */
  name: string;
  /** one-letter alias without the dash */
  short?: string;
  /** flag: no value; string / number / int: one value */
  type: 'flag' | 'string' | 'number' | 'int';
  /** may be given several times (the values are collected in order) */
  repeat?: boolean;
  /** placeholder in the help text */
  value?: string;
  help: string;
}

export interface CommandSpec {
  name: string;
  /** `etam NAME ...` synopsis lines */
  usage: string[];
  summary: string;
  /** paragraphs after the options in `--help` */
  details?: string;
  options: OptionSpec[];
  /** how many positional arguments: [min, max] */
  positionals: [number, number];
  /** what to say about an option this command does not take (long name -> hint), e.g. another command's */
  hints?: Record<string, string>;
}

export type OptionValue = boolean | string | number | string[] | number[];

export interface ParsedArgs {
  positional: string[];
  /** by long name; repeated options give arrays, absent ones are undefined */
  opts: Record<string, OptionValue | undefined>;
  help: boolean;
}

/** The options every subcommand takes. */
export const COMMON_OPTIONS: OptionSpec[] = [
  { name: 'help', short: 'h', type: 'flag', help: 'show this help' },
];

function closest(word: string, names: string[]): string | undefined {
  // edit distance, for "did you mean --multimask?"
  const d = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0]!;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const cur = row[j]!;
        row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = cur;
      }
    }
    return row[b.length]!;
  };
  let best: string | undefined, bestD = Infinity;
  for (const n of names) {
    const dist = d(word, n);
    if (dist < bestD) { best = n; bestD = dist; }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** Parses a subcommand's arguments (everything after its name). */
export function parseArgs(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  const all = [...spec.options, ...COMMON_OPTIONS];
  const byLong = new Map(all.map((o) => [o.name, o]));
  const byShort = new Map(all.filter((o) => o.short).map((o) => [o.short!, o]));
  const opts: Record<string, OptionValue | undefined> = {};
  const positional: string[] = [];
  let help = false;
  let onlyPositional = false;

  const convert = (o: OptionSpec, raw: string): string | number => {
    if (o.type === 'string') return raw;
    const v = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(v) || (o.type === 'int' && !Number.isInteger(v))) {
      throw usageError(spec.name, `--${o.name} takes ${o.type === 'int' ? 'a whole number' : 'a number'}, not '${raw}'`);
    }
    return v;
  };

  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (onlyPositional || !a.startsWith('-') || a === '-' || /^-\d/.test(a)) {
      positional.push(a);
      continue;
    }
    if (a === '--') { onlyPositional = true; continue; }
    let o: OptionSpec | undefined;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq >= 0 ? a.slice(eq + 1) : undefined;
      o = byLong.get(name);
      if (!o) {
        const hint = spec.hints && Object.hasOwn(spec.hints, name) ? spec.hints[name] : undefined;
        if (hint) throw usageError(spec.name, `unknown option --${name}: ${hint}`);
        const guess = closest(name, [...byLong.keys()]);
        throw usageError(spec.name, `unknown option --${name}${guess ? ` (did you mean --${guess}?)` : ''}`);
      }
    } else {
      o = byShort.get(a.slice(1, 2));
      if (!o || a.length > 2) {
        const long = { p: 'point', b: 'box' }[a.slice(1)];
        const hint = long && spec.hints && Object.hasOwn(spec.hints, long) ? spec.hints[long] : undefined;
        throw usageError(spec.name, `unknown option ${a}${hint ? `: ${hint}` : ''}`);
      }
    }
    if (o.name === 'help') { help = true; continue; }
    if (o.type === 'flag') {
      if (inline !== undefined) throw usageError(spec.name, `--${o.name} takes no value`);
      opts[o.name] = true;
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      if (i + 1 >= argv.length) throw usageError(spec.name, `--${o.name} needs a value${o.value ? ` (${o.value})` : ''}`);
      raw = argv[++i]!;
    }
    const v = convert(o, raw);
    if (o.repeat) {
      const list = (opts[o.name] ?? []) as (string | number)[];
      list.push(v);
      opts[o.name] = list as string[] | number[];
    } else {
      if (opts[o.name] !== undefined) throw usageError(spec.name, `--${o.name} is given twice`);
      opts[o.name] = v;
    }
  }
  if (!help) {
    const [min, max] = spec.positionals;
    if (positional.length < min) throw usageError(spec.name, `missing argument${min - positional.length > 1 ? 's' : ''}: ${spec.usage[0]}`);
    if (positional.length > max) throw usageError(spec.name, `unexpected argument '${positional[max]}'`);
  }
  return { positional, opts, help };
}

/** The `--help` text of a subcommand. */
export function helpText(spec: CommandSpec): string {
  const lines = [spec.summary, '', 'usage:', ...spec.usage.map((u) => `  etam ${u}`), '', 'options:'];
  const all = [...spec.options, ...COMMON_OPTIONS];
  const left = all.map((o) => `${o.short ? `-${o.short}, ` : '    '}--${o.name}${o.type === 'flag' ? '' : ` ${o.value ?? o.type.toUpperCase()}`}`);
  const width = Math.min(34, Math.max(...left.map((l) => l.length)) + 2);
  all.forEach((o, i) => {
    const l = left[i]!;
    const helpLines = o.help.split('\n');
    if (o.repeat) helpLines[helpLines.length - 1] += ' (repeatable)';
    lines.push(`  ${l.padEnd(width)}${l.length >= width ? `\n  ${' '.repeat(width)}` : ''}${helpLines[0]}`);
    for (const h of helpLines.slice(1)) lines.push(`  ${' '.repeat(width)}${h}`);
  });
  if (spec.details) lines.push('', spec.details.trim());
  return lines.join('\n');
}

// ------------------------------------------------------------------------------ typed getters

export const getString = (p: ParsedArgs, name: string): string | undefined => p.opts[name] as string | undefined;
export const getNumber = (p: ParsedArgs, name: string): number | undefined => p.opts[name] as number | undefined;
export const getFlag = (p: ParsedArgs, name: string): boolean => p.opts[name] === true;
export const getList = (p: ParsedArgs, name: string): string[] => (p.opts[name] as string[] | undefined) ?? [];
