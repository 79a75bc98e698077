/**
 * The converter's old entry point, kept for scripts that call it: the command now lives in the
 * `etam` CLI (src/cli/convert.ts).
 *
 *   npx tsx src/convert/cli.ts IN.pt OUT.safetensors [--f16]   ==   etam convert IN.pt OUT.safetensors [--f16]
 */
import { main } from '../cli/main.js';

void main(['convert', ...process.argv.slice(2)]);
