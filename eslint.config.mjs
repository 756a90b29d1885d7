// Type-aware lint (typescript-eslint) on src/ and test/: the promise rules catch what the type
// check cannot (a promise nobody awaits, an async function where a void callback is expected).
// Formatting is prettier's (.prettierrc.json). `npm run lint` runs both; CI runs it.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/**', 'scripts/**', '*.config.*'] },
  {
    files: ['src/**/*.ts', 'test/**/*.ts'],
    extends: [tseslint.configs.base],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
    },
  },
);
