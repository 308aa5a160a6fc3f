/** Tests run the TypeScript sources through ts-jest against the built native addon. onnx-buf
 *  ships ES modules only, so ts-jest also turns its .js into CommonJS for jest's loader.
 *  ts-jest only transpiles (isolatedModules); `npm test`'s pretest type-checks lib and tests. */
const { compilerOptions } = require('./tsconfig.json');

module.exports = {
  testEnvironment: '<rootDir>/test/helpers/node_environment.js',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: { ...compilerOptions, isolatedModules: true } }],
    '^.+/node_modules/onnx-buf/.+\\.js$': [
      'ts-jest',
      { tsconfig: { allowJs: true, module: 'commonjs', target: 'ES2022', isolatedModules: true } },
    ],
  },
  transformIgnorePatterns: ['/node_modules/(?!onnx-buf/)'],
  testTimeout: 120000,
  maxWorkers: 2,
};
