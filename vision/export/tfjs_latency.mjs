// Median milliseconds per image of a TF.js export under Node, on the wasm backend (the page's
// fastest on a CPU-only machine), its weights loaded as the page loads them (web/classifier.js's
// fetchArtifacts expands the per-channel uint8 kernels). Called by vision/export/parity.py.
// Usage: node tfjs_latency.mjs WEB_DIR MODEL_DIR RUNS  ->  {"backend": "wasm", "median_ms": 6.1}
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [web, modelDir, runs] = process.argv.slice(2);
const require = createRequire(join(web, 'package.json'));
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm').setWasmPaths(
  `${join(web, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist')}/`);
const { fetchArtifacts } = await import(pathToFileURL(join(web, 'classifier.js')).href);

const readLocal = async (path) => {
  const bytes = readFileSync(path);
  return {
    ok: true,
    json: async () => JSON.parse(bytes.toString('utf8')),
    arrayBuffer: async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  };
};

// setBackend resolves false (and tfjs falls back) when wasm cannot start: report what ran.
await tf.setBackend('wasm');
const model = await tf.loadGraphModel(tf.io.fromMemory(await fetchArtifacts(modelDir, readLocal)));
const x = tf.zeros(model.inputs[0].shape.map((n) => (n === -1 || n === null ? 1 : n)));
const once = async () => {
  const outputs = [model.predict(x)].flat();
  await Promise.all(outputs.map((t) => t.data()));
  outputs.forEach((t) => t.dispose());
};
for (let i = 0; i < 3; i += 1) await once(); // warm-up: kernels compiled, buffers allocated
const times = [];
for (let i = 0; i < Number(runs); i += 1) {
  const start = performance.now();
  await once();
  times.push(performance.now() - start);
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({ backend: tf.getBackend(), median_ms: times[Math.floor(times.length / 2)] }));
