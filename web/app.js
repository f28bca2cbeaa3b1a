// All DOM access for the page. The maths lives in classifier.js.
import {
  BACKENDS, FpsMeter, backendOrder, describeTimes, fastestBackend, fetchArtifacts, isUnknown, parseMetadata,
  pickBackend, preprocess, splitOutputs, timeBackends, topK,
} from './classifier.js';

const tf = window.tf;
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MODEL_BASE = (params.get('model') || 'model').replace(/\/$/, '');
const SHOWN = 5;

let model;
let meta;
let streaming = false;
const stats = { frames: 0, lastProbabilities: null };
window.visionStats = stats; // read by tests and curious visitors

async function main() {
  try {
    tf.wasm?.setWasmPaths(new URL('node_modules/@tensorflow/tfjs-backend-wasm/dist/', location.href).href);
    tf.env().set('SOFTWARE_WEBGL_ENABLED', true); // headless and GPU-less machines: SwiftShader
    const response = await fetch(`${MODEL_BASE}/metadata.json`);
    if (!response.ok) throw new Error(`cannot load ${MODEL_BASE}/metadata.json (HTTP ${response.status})`);
    meta = parseMetadata(await response.json());
    const artifacts = await fetchArtifacts(MODEL_BASE);
    // A model on the current backend, and one whole prediction on a blank image twice the
    // input size (so the resize path is warmed, and its shaders compiled, too).
    const prepare = async () => {
      const candidate = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
      const infer = async () => {
        const outputs = tf.tidy(() => candidate.predict(
          preprocess(tf, tf.zeros([meta.height * 2, meta.width * 2, 3], 'int32'), meta)));
        const list = Array.isArray(outputs) ? outputs : [outputs];
        await Promise.all(list.map((t) => t.data()));
        tf.dispose(list);
      };
      return { model: candidate, infer, dispose: () => candidate.dispose() };
    };
    const forced = params.get('backend');
    let backend;
    if (BACKENDS.includes(forced)) {
      backend = await pickBackend(tf, backendOrder(forced));
      $('backend-times').textContent = '(chosen by ?backend=)';
    } else {
      $('status').textContent = 'Measuring which backend is fastest here…';
      stats.backendTimes = await timeBackends(tf, BACKENDS, prepare);
      backend = fastestBackend(stats.backendTimes);
      await tf.setBackend(backend);
      $('backend-times').textContent = describeTimes(stats.backendTimes);
    }
    const chosen = await prepare();
    await chosen.infer(); // the first prediction's stall (shaders, uploads) is paid here, not on a user's image
    model = chosen.model;
    $('backend').textContent = backend;
    $('title').textContent = meta.name;
    $('status').textContent = `Ready: ${meta.labels.length} classes${meta.quantization ? `, ${meta.quantization} weights` : ''}`;
    $('camera').disabled = false;
    stats.readyTensors = tf.memory().numTensors;
    document.body.dataset.ready = 'true';
  } catch (error) {
    $('status').textContent = `Could not start: ${error.message}`;
    document.body.dataset.ready = 'error';
  }
}

/** Classify any source tf.browser.fromPixels accepts; returns the probabilities. */
async function classify(source) {
  const started = performance.now();
  const outputs = tf.tidy(() => splitOutputs(model.predict(preprocess(tf, tf.browser.fromPixels(source), meta))));
  const probabilities = await outputs.probabilities.data();
  const familiarity = outputs.familiarity ? (await outputs.familiarity.data())[0] : null;
  tf.dispose([outputs.probabilities, outputs.familiarity].filter(Boolean));
  const elapsed = performance.now() - started;
  stats.lastProbabilities = Array.from(probabilities);
  stats.lastFamiliarity = familiarity;
  stats.numTensors = tf.memory().numTensors;
  render(probabilities, familiarity, elapsed);
  return probabilities;
}

function render(probabilities, familiarity, elapsed) {
  const results = $('results');
  const unknown = isUnknown(familiarity, meta);
  results.dataset.probabilities = JSON.stringify(Array.from(probabilities));
  results.dataset.unknown = String(unknown);
  const verdict = $('verdict');
  verdict.hidden = !unknown;
  if (unknown) {
    const nearest = topK(probabilities, meta.labels, 1)[0].label;
    verdict.textContent = `Not sure: this image is unlike anything the model was trained on (familiarity `
      + `${familiarity.toFixed(3)} < ${meta.unknownThreshold.toFixed(3)}). Nearest class: ${nearest}.`;
  }
  results.classList.toggle('unknown', unknown);
  results.replaceChildren(...topK(probabilities, meta.labels, SHOWN).map(({ label, probability }) => {
    const item = document.createElement('li');
    item.dataset.label = label;
    item.dataset.probability = String(probability);
    const name = document.createElement('span');
    name.textContent = label;
    const bar = document.createElement('div');
    bar.className = 'bar';
    const fill = document.createElement('span');
    fill.style.width = `${(probability * 100).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement('span');
    value.textContent = `${(probability * 100).toFixed(1)}%`;
    item.append(name, bar, value);
    return item;
  }));
  $('latency').textContent = `${elapsed.toFixed(1)} ms`;
}

async function classifyFile(file) {
  if (!file || !model) return;
  try {
    // Decode exactly: no colour-space conversion, no premultiplied alpha.
    const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
    $('preview').src = URL.createObjectURL(file);
    await classify(bitmap);
    bitmap.close();
    stats.files = (stats.files || 0) + 1;
    $('status').textContent = `Classified ${file.name}`;
  } catch (error) {
    $('status').textContent = `Could not read ${file.name}: ${error.message}`;
  }
}

async function toggleCamera() {
  const video = $('video');
  if (streaming) {
    streaming = false;
    video.srcObject?.getTracks().forEach((track) => track.stop());
    video.hidden = true;
    $('camera').textContent = 'Start webcam';
    return;
  }
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    await video.play();
  } catch (error) {
    $('status').textContent = `Webcam unavailable: ${error.message}`;
    return;
  }
  video.hidden = false;
  $('camera').textContent = 'Stop webcam';
  streaming = true;
  const meter = new FpsMeter();
  const loop = async () => {
    if (!streaming) return;
    if (video.readyState >= 2) {
      await classify(video);
      stats.frames += 1;
      $('fps').textContent = `${meter.tick(performance.now()).toFixed(1)} fps`;
    }
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
}

$('file').addEventListener('change', async (event) => {
  await classifyFile(event.target.files[0]);
  event.target.value = ''; // so choosing the same file again classifies it again
});
$('camera').addEventListener('click', toggleCamera);
const drop = $('drop');
drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (event) => {
  event.preventDefault();
  drop.classList.remove('over');
  classifyFile(event.dataTransfer.files[0]);
});

main();
