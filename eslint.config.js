// Lint rules: typescript-eslint's type-aware set, because this is a server built on promises and
// streams and the rules that read types (a promise nobody awaits, a promise passed where a callback
// is expected) catch the bugs that matter here. Formatting is Prettier's job (.prettierrc.json);
// eslint-config-prettier turns off the rules that would fight it.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'test-results/', 'bench/results/', 'data/'] },
  js.configs.recommended,
  // The bench and soak scripts are plain Node.js modules.
  { files: ['**/*.mjs', '**/*.js'], languageOptions: { globals: globals.node } },
  ...tseslint.configs.recommendedTypeChecked.map((c) => ({ ...c, files: ['**/*.ts', '**/*.tsx'] })),
  {
    languageOptions: {
      // tsconfig.check.json: the code, the tests and the soak, type-checked together (`npm run lint`);
      // web/tsconfig.json: the console's pages (browser code: the DOM's types, Preact's JSX);
      // test/browser/tsconfig.json: the tests that drive a browser (the DOM's types too).
      parserOptions: { project: ['./tsconfig.check.json', './web/tsconfig.json', './test/browser/tsconfig.json'], tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    files: ['**/*.ts', '**/*.tsx'],
    rules: {
      // `_name` marks what is unused on purpose: a destructured field left out, a compile-time check
      // (config/loaded.ts `Expect<...>`), an argument an interface requires.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // Async methods without await implement promise-returning interfaces (a lockout store in
      // memory today, a shared one later): the signature is the contract.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // smtp-server offers no hooks for what the listener needs, so it wraps a connection's own methods
    // and calls the originals with `.call(connection, ...)`: unbinding them is the point
    // (listener/fast-greeting.ts checks they exist at start-up).
    files: ['src/listener/**/*.ts', 'test/**/*.ts'],
    rules: { '@typescript-eslint/unbound-method': 'off' },
  },
  {
    // Tests read records back with JSON.parse and assert on them; typing every parse would add noise, not safety.
    files: ['test/**/*.ts', 'soak/**/*.ts'],
    rules: { '@typescript-eslint/no-unsafe-assignment': 'off' },
  },
  {
    // Tests of terminal escaping and protocol bytes match control characters on purpose.
    files: ['test/**/*.ts'],
    rules: { 'no-control-regex': 'off' },
  },
  prettier,
);
