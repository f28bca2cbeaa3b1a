// Loads a TF.js graph-model export under Node with TF.js itself, its weights read as the page
// reads them (web/classifier.js's fetchArtifacts: per-channel uint8 expanded, float16 decoded),
// so what runs is what a visitor's browser runs. Shared by tfjs_latency.mjs (timing, wasm) and
// tests/tfjs_predict.mjs (answers, cpu).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// fetchArtifacts takes a fetch; this one answers from the local disk.
const readLocal = async (path) => {
  const bytes = readFileSync(path);
  return {
    ok: true,
    json: async () => JSON.parse(bytes.toString('utf8')),
    arrayBuffer: async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  };
};

/**
 * The model in MODEL_DIR on BACKEND ('cpu' or 'wasm'), with the TF.js that WEB_DIR installed.
 * setBackend resolves false (and TF.js falls back) when a backend cannot start: callers report
 * tf.getBackend() rather than assume it.
 * @returns {Promise<{tf: object, model: object}>}
 */
export async function loadExport(web, modelDir, backend) {
  const require = createRequire(join(web, 'package.json'));
  const tf = require('@tensorflow/tfjs');
  if (backend === 'wasm') {
    require('@tensorflow/tfjs-backend-wasm').setWasmPaths(
      `${join(web, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist')}/`);
  }
  const { fetchArtifacts } = await import(pathToFileURL(join(web, 'classifier.js')).href);
  await tf.setBackend(backend);
  const model = await tf.loadGraphModel(tf.io.fromMemory(await fetchArtifacts(modelDir, readLocal)));
  return { tf, model };
}
