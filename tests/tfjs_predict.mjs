// Runs an exported TF.js graph model under Node with TF.js itself (cpu backend), its weights
// loaded as the page loads them (the package's vision/export/tfjs_node.mjs: per-channel uint8
// expanded, float16 decoded by TF.js), so a test measures the quantized weights, not the graph
// they came from.
// Usage: node tfjs_predict.mjs WEB_DIR MODEL_DIR INPUT_JSON  ->  JSON list of {shape, data} outputs
import { readFileSync } from 'node:fs';

import { loadExport } from '../vision/export/tfjs_node.mjs';

const [web, modelDir, inputFile] = process.argv.slice(2);
const { tf, model } = await loadExport(web, modelDir, 'cpu');
const { shape, data } = JSON.parse(readFileSync(inputFile, 'utf8'));
const outputs = [model.predict(tf.tensor(data, shape))].flat();
console.log(JSON.stringify(outputs.map((t) => ({ shape: t.shape, data: Array.from(t.dataSync()) }))));
