// Runs an exported TF.js graph model under Node with TF.js itself (cpu backend), its weights
// loaded as the page loads them (fetchArtifacts: per-channel uint8 expanded, float16 decoded
// by TF.js), so a test measures the quantized weights, not the graph they came from.
// Usage: node tfjs_predict.mjs WEB_DIR MODEL_DIR INPUT_JSON  ->  JSON list of {shape, data} outputs
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [web, modelDir, inputFile] = process.argv.slice(2);
const tf = createRequire(join(web, 'package.json'))('@tensorflow/tfjs');
const { fetchArtifacts } = await import(pathToFileURL(join(web, 'classifier.js')).href);

const readLocal = async (path) => {
  const bytes = readFileSync(path);
  return {
    ok: true,
    json: async () => JSON.parse(bytes.toString('utf8')),
    arrayBuffer: async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  };
};

await tf.setBackend('cpu');
const model = await tf.loadGraphModel(tf.io.fromMemory(await fetchArtifacts(modelDir, readLocal)));
const { shape, data } = JSON.parse(readFileSync(inputFile, 'utf8'));
const outputs = [model.predict(tf.tensor(data, shape))].flat();
console.log(JSON.stringify(outputs.map((t) => ({ shape: t.shape, data: Array.from(t.dataSync()) }))));
