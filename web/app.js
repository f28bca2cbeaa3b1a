// All DOM access for the page. The maths lives in classifier.js.
import {
  BACKENDS, FpsMeter, backendOrder, describeTimes, fastestBackend, fetchArtifacts, isUnknown, overWhite,
  parseMetadata, pickBackend, preprocess, sameOriginUrl, splitOutputs, timeBackends, topK,
} from './classifier.js';
import { FeatureBank, headMetadata, headProbabilities, trainHead } from './trainer.js';

const tf = window.tf;
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/**
 * The folder a ?name= parameter names, as {base} (an absolute URL, no trailing slash), or
 * {refused} (why) when it is on another site, or {} when absent and there is no `fallback`.
 * Nothing is fetched from a refused folder, and its URL is not echoed on the page.
 */
function folderParam(name, fallback = null) {
  const value = params.get(name) || fallback;
  if (!value) return {};
  const base = sameOriginUrl(value, location.href);
  if (base) return { base: base.replace(/\/$/, '') };
  return { refused: `?${name}= names another site; this page loads models only from its own site `
    + `(${location.origin}), so nothing was loaded` };
}

const MODEL = folderParam('model', 'model');
const MODEL_BASE = MODEL.base;
const SHOWN = 5;

let model;
let meta;
let streaming = false;
let bank = null; // features of the images added to each class (when the export outputs features)
let custom = null; // {head, labels}: classes trained (or loaded) in this browser
let lastTraining = null; // what the download's metadata.json records
const HEAD = folderParam('head');
const HEAD_BASE = HEAD.base;
const stats = { frames: 0, lastProbabilities: null };
window.visionStats = stats; // read by tests and curious visitors
// The current head on given features (tests compare it with the same recipe in Keras).
window.visionHead = async (features) => Array.from(await headProbabilities(tf, custom.head, Float32Array.from(features)));

async function main() {
  try {
    if (MODEL.refused) throw new Error(MODEL.refused);
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
      // Measured once per browser and model (software WebGL/WebGPU take seconds to warm up);
      // ?remeasure measures again.
      const key = `vision-backend|${meta.name}|${navigator.userAgent}`;
      const remembered = params.has('remeasure') ? null : JSON.parse(localStorage.getItem(key) || 'null');
      if (remembered && BACKENDS.includes(remembered.backend)) {
        backend = await pickBackend(tf, backendOrder(remembered.backend));
        stats.backendTimes = remembered.times;
        $('backend-times').textContent = `${describeTimes(remembered.times)} (measured on your first visit)`;
      } else {
        $('status').textContent = 'Measuring which backend is fastest here (once)…';
        stats.backendTimes = await timeBackends(tf, BACKENDS, prepare);
        backend = fastestBackend(stats.backendTimes);
        await tf.setBackend(backend);
        localStorage.setItem(key, JSON.stringify({ backend, times: stats.backendTimes }));
        $('backend-times').textContent = describeTimes(stats.backendTimes);
      }
    }
    const chosen = await prepare();
    await chosen.infer(); // the first prediction's stall (shaders, uploads) is paid here, not on a user's image
    model = chosen.model;
    $('backend').textContent = backend;
    $('title').textContent = meta.name;
    $('status').textContent = `Ready: ${meta.labels.length} classes${meta.quantization ? `, ${meta.quantization} weights` : ''}`;
    $('camera').disabled = false;
    if (meta.featureSize) {
      bank = new FeatureBank(meta.featureSize);
      $('trainer').hidden = false;
      window.visionBank = bank; // read by tests
      if (HEAD.base || HEAD.refused) await loadHead(null);
    }
    stats.readyTensors = tf.memory().numTensors;
    document.body.dataset.ready = 'true';
  } catch (error) {
    $('status').textContent = `Could not start: ${error.message}`;
    document.body.dataset.ready = 'error';
  }
}

/** The model's outputs for one image, as arrays: probabilities, familiarity, features. */
async function run(source) {
  const outputs = tf.tidy(() => splitOutputs(
    model.predict(preprocess(tf, overWhite(tf, tf.browser.fromPixels(source, 4)), meta)), meta.labels.length));
  const [probabilities, familiarity, features] = await Promise.all(
    [outputs.probabilities, outputs.familiarity, outputs.features].map((t) => (t ? t.data() : null)));
  tf.dispose(Object.values(outputs).filter(Boolean));
  return { probabilities, familiarity: familiarity ? familiarity[0] : null, features };
}

/** Classify any source tf.browser.fromPixels accepts, with the classes trained here if any. */
async function classify(source) {
  const started = performance.now();
  const answer = await run(source);
  let { probabilities, familiarity } = answer;
  let labels = meta.labels;
  if (custom) {
    probabilities = await headProbabilities(tf, custom.head, answer.features);
    familiarity = null; // the everyday model's detector says nothing about classes trained here
    labels = custom.labels;
  }
  const elapsed = performance.now() - started;
  stats.lastProbabilities = Array.from(probabilities);
  stats.lastFamiliarity = familiarity;
  stats.numTensors = tf.memory().numTensors;
  render(probabilities, familiarity, elapsed, labels);
  return probabilities;
}

function render(probabilities, familiarity, elapsed, labels) {
  const results = $('results');
  const unknown = isUnknown(familiarity, meta);
  results.dataset.probabilities = JSON.stringify(Array.from(probabilities));
  results.dataset.unknown = String(unknown);
  const verdict = $('verdict');
  verdict.hidden = !unknown;
  if (unknown) {
    const nearest = topK(probabilities, labels, 1)[0].label;
    verdict.textContent = `Not sure: this image is unlike anything the model was trained on (familiarity `
      + `${familiarity.toFixed(3)} < ${meta.unknownThreshold.toFixed(3)}). Nearest class: ${nearest}.`;
  }
  results.classList.toggle('unknown', unknown);
  results.replaceChildren(...topK(probabilities, labels, SHOWN).map(({ label, probability }) => {
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
  if (streaming) {
    stopCamera();
    return;
  }
  await startCamera();
}

function stopCamera() {
  const video = $('video');
  streaming = false;
  video.srcObject?.getTracks().forEach((track) => track.stop());
  video.hidden = true;
  $('camera').textContent = 'Start webcam';
}

/** Start the webcam and the live loop; false when there is no camera (the reason is shown). */
async function startCamera() {
  const video = $('video');
  if (streaming) return true;
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    await video.play();
  } catch (error) {
    $('status').textContent = `Webcam unavailable: ${error.message}`;
    return false;
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
  return true;
}

// -- Training new classes in this browser ---------------------------------------------

/** Decode a file exactly (as classifyFile does). */
function decode(file) {
  return createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
}

/** Put one image through the model and keep its features with class `index`. */
async function addExample(index, source) {
  const { features } = await run(source);
  bank.add(index, features);
  stats.examples = (stats.examples || 0) + 1;
  renderClasses();
}

async function addFiles(index, files) {
  for (const file of files) {
    try {
      const bitmap = await decode(file);
      await addExample(index, bitmap);
      bitmap.close();
    } catch (error) {
      $('train-status').textContent = `Could not read ${file.name}: ${error.message}`;
    }
  }
}

/** Webcam frames for class `index`, one every 100 ms. */
async function captureFrames(index, count = 10) {
  if (!(await startCamera())) return;
  for (let i = 0; i < count; i += 1) {
    await addExample(index, $('video'));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function renderClasses() {
  $('classes').replaceChildren(...bank.classes.map((entry, index) => {
    const row = document.createElement('div');
    row.className = 'class-row drop';
    row.dataset.index = String(index);
    const name = document.createElement('strong');
    name.textContent = entry.name;
    const count = document.createElement('span');
    count.className = 'count';
    count.textContent = `${entry.features.length} images`;
    const capture = document.createElement('button');
    capture.type = 'button';
    capture.textContent = 'Add 10 webcam frames';
    capture.addEventListener('click', () => captureFrames(index));
    const picker = document.createElement('label');
    picker.textContent = 'or drop / choose images ';
    const input = document.createElement('input');
    input.type = 'file';
    input.multiple = true;
    input.accept = 'image/*';
    input.className = 'class-files';
    input.addEventListener('change', async () => {
      await addFiles(index, [...input.files]);
      input.value = '';
    });
    picker.append(input);
    row.addEventListener('dragover', (event) => event.preventDefault());
    row.addEventListener('drop', (event) => {
      event.preventDefault();
      addFiles(index, [...event.dataTransfer.files]);
    });
    row.append(name, count, capture, picker);
    return row;
  }));
  $('train').disabled = bank.problem() !== null;
}

function addClass() {
  try {
    bank.addClass($('class-name').value);
    $('class-name').value = '';
    renderClasses();
  } catch (error) {
    $('train-status').textContent = error.message;
  }
}

/** Use `head` (a trained or loaded TF.js head) for every prediction from now on. */
function useHead(head, labels, source) {
  custom?.head.dispose();
  custom = { head, labels };
  $('title').textContent = `${labels.join(' · ')} (${source})`;
  $('everyday').hidden = false;
  stats.headLabels = labels;
}

async function train() {
  $('train').disabled = true;
  $('train-status').textContent = 'Training…';
  try {
    const trained = await trainHead(tf, bank, undefined, (epoch) => {
      if (epoch % 20 === 0) $('train-status').textContent = `Training… epoch ${epoch + 1}`;
    });
    useHead(trained.head, bank.labels, 'trained here');
    lastTraining = trained;
    stats.trainings = (stats.trainings || 0) + 1;
    stats.trainSeconds = trained.seconds;
    $('train-status').textContent = `Trained on ${trained.count} images in ${trained.seconds.toFixed(1)} s `
      + `(loss ${trained.loss.toFixed(3)}). Predictions below now use your classes.`;
    $('download').disabled = false;
  } catch (error) {
    $('train-status').textContent = `Could not train: ${error.message}`;
  } finally {
    $('train').disabled = bank.problem() !== null;
  }
}

function saveFile(name, blob) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

/** head.json + head.weights.bin (a TF.js layers model) and metadata.json, as downloads. */
async function download() {
  await custom.head.save(tf.io.withSaveHandler(async (artifacts) => {
    const weights = new Blob([artifacts.weightData], { type: 'application/octet-stream' });
    const modelJson = {
      format: 'layers-model', generatedBy: artifacts.generatedBy, convertedBy: null,
      modelTopology: artifacts.modelTopology,
      weightsManifest: [{ paths: ['head.weights.bin'], weights: artifacts.weightSpecs }],
    };
    saveFile('head.json', new Blob([JSON.stringify(modelJson)], { type: 'application/json' }));
    saveFile('head.weights.bin', weights);
    saveFile('metadata.json', new Blob([JSON.stringify(headMetadata(meta, custom.labels, lastTraining), null, 2)],
      { type: 'application/json' }));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  stats.downloads = (stats.downloads || 0) + 1;
}

/** A downloaded head, from chosen files or from ?head=URL. */
async function loadHead(files) {
  try {
    let head;
    let headMeta;
    if (files) {
      const byName = Object.fromEntries([...files].map((file) => [file.name, file]));
      if (!byName['head.json'] || !byName['head.weights.bin'] || !byName['metadata.json']) {
        throw new Error('choose head.json, head.weights.bin and metadata.json together');
      }
      headMeta = JSON.parse(await byName['metadata.json'].text());
      head = await tf.loadLayersModel(tf.io.browserFiles([byName['head.json'], byName['head.weights.bin']]));
    } else {
      if (HEAD.refused) throw new Error(HEAD.refused);
      const response = await fetch(`${HEAD_BASE}/metadata.json`);
      if (!response.ok) throw new Error(`cannot load ${HEAD_BASE}/metadata.json (HTTP ${response.status})`);
      headMeta = await response.json();
      // metadata.json names the head's file: it, too, must be on this site.
      const headUrl = sameOriginUrl(headMeta.head || 'head.json', `${HEAD_BASE}/`, location.href);
      if (!headUrl) throw new Error('metadata.json names a head on another site; nothing was loaded');
      head = await tf.loadLayersModel(headUrl);
    }
    if (headMeta.format !== 'tfjs-head' || headMeta.features?.size !== meta.featureSize) {
      head.dispose();
      throw new Error(`this head takes ${headMeta.features?.size} features; the page's model gives ${meta.featureSize}`);
    }
    useHead(head, headMeta.labels.map(String), 'loaded');
    lastTraining = null;
    $('download').disabled = true; // it is already a download
    $('train-status').textContent = `Loaded ${headMeta.labels.length} classes: ${headMeta.labels.join(', ')}.`;
  } catch (error) {
    $('train-status').textContent = `Could not load that model: ${error.message}`;
  }
}

function backToEveryday() {
  custom?.head.dispose();
  custom = null;
  $('download').disabled = true;
  $('title').textContent = meta.name;
  $('everyday').hidden = true;
  stats.headLabels = null;
}

$('add-class').addEventListener('click', addClass);
$('class-name').addEventListener('keydown', (event) => { if (event.key === 'Enter') addClass(); });
$('train').addEventListener('click', train);
$('download').addEventListener('click', download);
$('load-head').addEventListener('change', (event) => loadHead(event.target.files));
$('everyday').addEventListener('click', backToEveryday);

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
