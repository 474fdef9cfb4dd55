import { defineConfig } from 'tsup';

export default defineConfig([
  {
    entry: { index: 'lib/index.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    shims: true,
    sourcemap: true,
    target: 'node20',
    outDir: 'dist',
    outExtension: ({ format }) => ({ js: format === 'cjs' ? '.cjs' : '.mjs' }),
  },
  {
    entry: { cli: 'lib/cli/main.ts' },
    format: ['cjs'],
    shims: true,
    sourcemap: true,
    target: 'node20',
    outDir: 'dist',
    outExtension: () => ({ js: '.cjs' }),
  },
]);
