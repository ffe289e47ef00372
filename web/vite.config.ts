// Builds the console's pages into dist/console/ (docs/console.md, "The pages"). That folder also holds
// the server's compiled code (tsc writes src/console/*.js there), so it is not emptied: only the
// app's own index.html and assets/ are replaced.
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const outDir = fileURLToPath(new URL('../dist/console', import.meta.url));

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  // Preact's automatic JSX runtime, compiled by Vite's own transformer (no Babel plugin needed).
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir,
    emptyOutDir: false,
    assetsDir: 'assets',
    // The content security policy allows no inline script: no inline module-preload polyfill.
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: 'es2022',
    reportCompressedSize: true,
  },
  plugins: [
    {
      name: 'mailtrail-clean-assets',
      apply: 'build',
      buildStart() {
        rmSync(`${outDir}/assets`, { recursive: true, force: true });
      },
    },
  ],
});
