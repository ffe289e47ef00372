// Lint rules: typescript-eslint's type-aware set, because this is a server built on promises and
// streams and the rules that read types (a promise nobody awaits, a promise passed where a callback
// is expected) catch the bugs that matter here. Formatting is Prettier's job (.prettierrc.json);
// eslint-config-prettier turns off the rules that would fight it.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'test-results/', 'bench/results/', 'data/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked.map((c) => ({ ...c, files: ['**/*.ts'] })),
  {
    languageOptions: {
      // tsconfig.check.json: the code, the tests and the soak, type-checked together (`npm run lint`).
      parserOptions: { project: ['./tsconfig.check.json'], tsconfigRootDir: import.meta.dirname },
    },
  },
  prettier,
);
