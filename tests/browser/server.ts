/**
 * Serving the pages for the headless-browser tests and benchmarks: a vite dev server on
 * 127.0.0.1 (WebGPU needs a secure origin; localhost counts) over the repository, plus a route
 * `/shared/...` onto the `shared` folder beside the repository (goldens, bedroom frames), which
 * is never copied into it. And launching Debian's Chromium with software WebGPU (SwiftShader).
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { extname, resolve, sep } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { createServer, type Plugin, type ViteDevServer } from 'vite';

export const REPO = resolve(import.meta.dirname, '../..');
/** ../shared beside the repository, as the CI clones it; ETAM_SHARED overrides. */
export const SHARED = resolve(process.env.ETAM_SHARED ?? resolve(REPO, '../shared'));
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const TYPES: Record<string, string> = {
  '.json': 'application/json', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.png': 'image/png',
  '.mp4': 'video/mp4', '.md': 'text/plain; charset=utf-8',
};

/** `/shared/<path>` -> SHARED/<path>, read-only, with Content-Length (for download progress). */
function sharedRoute(): Plugin {
  return {
    name: 'etam-shared-route',
    configureServer(server) {
      server.middlewares.use('/shared', (req, res, next) => {
        const rel = decodeURIComponent((req.url ?? '/').split('?')[0]!);
        const file = resolve(SHARED, '.' + rel);
        if (!(file === SHARED || file.startsWith(SHARED + sep)) || !existsSync(file) || !statSync(file).isFile()) return next();
        res.setHeader('Content-Type', TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream');
        res.setHeader('Content-Length', String(statSync(file).size));
        createReadStream(file).pipe(res);
      });
    },
  };
}

export interface Served {
  /** http://127.0.0.1:PORT */
  origin: string;
  server: ViteDevServer;
  close(): Promise<void>;
}

/** Starts the dev server on a free port of 127.0.0.1. */
export async function serve(): Promise<Served> {
  const server = await createServer({
    configFile: false,
    root: REPO,
    logLevel: 'warn',
    clearScreen: false,
    publicDir: false,
    plugins: [sharedRoute()],
    // the demo imports the library by its package name
    resolve: { alias: { 'efficienttam-webgpu': resolve(REPO, 'src/index.ts') } },
    server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false, watch: null },
    // the library has no dependencies to pre-bundle
    optimizeDeps: { noDiscovery: true, include: [] },
  });
  await server.listen();
  const addr = server.httpServer!.address();
  if (!addr || typeof addr === 'string') throw new Error('the dev server has no port');
  return { origin: `http://127.0.0.1:${addr.port}`, server, close: () => server.close() };
}

/**
 * Chromium flags for WebGPU without a GPU: --enable-unsafe-webgpu exposes navigator.gpu on Linux,
 * where Dawn then falls back to SwiftShader (its CPU Vulkan); the Vulkan/ANGLE flags keep the
 * whole GPU process on SwiftShader. --use-vulkan=swiftshader puts the compositor's Vulkan on
 * SwiftShader too: without it a WebGPU canvas is never shown (its shared image cannot be read by
 * the compositor: "Unable to initialize SkSurface"), so screenshots and drawImage() of it are
 * blank. --no-sandbox: the tests may run as root (CI containers).
 */
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-angle=swiftshader',
  '--no-sandbox',
  '--disable-dev-shm-usage',
  // keep timers and rAF running in a background/headless tab
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

/**
 * What a person gets with Chromium's defaults for headless WebGPU (`--enable-unsafe-webgpu
 * --headless=new`, --no-sandbox for root in containers): no Vulkan or ANGLE flags, so a WebGPU
 * canvas takes the GPU process down (the demo must notice and draw on a 2D canvas).
 */
export const CHROMIUM_DEFAULT_ARGS = ['--enable-unsafe-webgpu', '--no-sandbox', '--disable-dev-shm-usage'];

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM);
}

export async function launch(args: readonly string[] = CHROMIUM_ARGS): Promise<Browser> {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...args],
    // page.evaluate calls that run a whole golden script take minutes on SwiftShader
    protocolTimeout: 900_000,
    defaultViewport: { width: 1280, height: 1000, deviceScaleFactor: 1 },
  });
}

/**
 * Opens a page, forwarding its console to `log` (prefixed) and collecting uncaught errors in
 * `errors` (tests assert it stays empty).
 */
export async function openPage(browser: Browser, url: string, log: (s: string) => void = (s) => console.log(s)): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('console', (m) => log(`[page] ${m.text()}`));
  page.on('pageerror', (e) => errors.push(String((e as Error).stack ?? e)));
  page.setDefaultTimeout(600_000);
  await page.goto(url, { waitUntil: 'load' });
  return { page, errors };
}
