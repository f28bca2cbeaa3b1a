// Median milliseconds per image of a TF.js export under Node, on the wasm backend (the page's
// fastest on a CPU-only machine), its weights loaded as the page loads them (tfjs_node.mjs).
// Called by vision/export/parity.py.
// Usage: node tfjs_latency.mjs WEB_DIR MODEL_DIR RUNS  ->  {"backend": "wasm", "median_ms": 6.1}
import { loadExport } from './tfjs_node.mjs';

const [web, modelDir, runs] = process.argv.slice(2);
const { tf, model } = await loadExport(web, modelDir, 'wasm');
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
