/**
 * Plots for the CLI's reports: a Vega-Lite spec rendered to SVG headless (no browser, no canvas).
 *
 * vega and vega-lite are ESM-only; this package is compiled to CommonJS, where TypeScript would turn
 * `import()` into `require()`. The loader below keeps a real dynamic import at run time. They load
 * on the first plot only, so commands without --plot never pay for them.
 */
import { promises as fs } from 'fs';

import { InvalidArgumentError } from '../errors';

/** A Vega-Lite specification (https://vega.github.io/vega-lite/docs/spec.html), kept as plain JSON. */
export type VegaLiteSpec = Record<string, unknown>;

interface VegaLiteModule {
  compile(spec: VegaLiteSpec): { spec: unknown };
}
interface VegaView {
  toSVG(): Promise<string>;
  finalize(): void;
}
interface VegaModule {
  parse(spec: unknown): unknown;
  View: new (runtime: unknown, options: { renderer: 'none' }) => VegaView;
}

// A dynamic import that survives the CommonJS transpile (see the file comment).
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

let modules: Promise<{ vega: VegaModule; vegaLite: VegaLiteModule }> | null = null;

function loadVega(): Promise<{ vega: VegaModule; vegaLite: VegaLiteModule }> {
  modules ??= Promise.all([importEsm('vega'), importEsm('vega-lite')]).then(([vega, vegaLite]) => ({
    vega: vega as VegaModule,
    vegaLite: vegaLite as VegaLiteModule,
  }));
  return modules;
}

/** Renders a Vega-Lite spec to an SVG document. */
export async function renderVegaLiteSvg(spec: VegaLiteSpec): Promise<string> {
  const { vega, vegaLite } = await loadVega();
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Renders a Vega-Lite spec and writes it to `file` (which must end in .svg). */
export async function writeVegaLiteSvg(file: string, spec: VegaLiteSpec): Promise<void> {
  if (!/\.svg$/i.test(file)) throw new InvalidArgumentError(`plots are written as SVG: the file name must end in .svg, got ${file}`);
  const svg = await renderVegaLiteSvg(spec);
  await fs.writeFile(file, svg.endsWith('\n') ? svg : `${svg}\n`);
}
