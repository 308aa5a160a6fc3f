// jest runs each test file in its own vm context, whose typed-array constructors differ from the
// host's. onnxruntime-node builds result tensors from host-realm arrays and then checks them
// against the context's Float32Array ("A float32 tensor's data must be type of Float32Array"),
// so the test context shares the host's typed arrays, as a plain Node program does.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer', 'SharedArrayBuffer', 'DataView',
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
  'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
];

class HostTypedArraysEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = HostTypedArraysEnvironment;
