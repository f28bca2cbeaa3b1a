// All DOM access for the page. The maths lives in classifier.js and trainer.js.
import {
  BACKENDS, CLEARLY_FASTER, FpsMeter, Mutex, backendOrder, describeTimes, fetchArtifacts, isUnknown,
  measureBackends, onBackend, overWhite, parseMetadata, pickBackend, preprocess, sameOriginUrl, splitOutputs,
  switchNow, topK,
} from './classifier.js';
import {
  FeatureBank, backgroundRows, familiarity as knnFamiliarity, detectorFromInfo, fitKnn, headMetadata, headProbabilities, trainHead,
} from './trainer.js';

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
const THUMBNAIL = 64; // px, the side of a class's sample thumbnails

let model;
let meta;
let streaming = false;
let pendingFile = null; // a photo dropped before the model was warm: answered as soon as it is
let bank = null; // features of the images added to each class (when the export outputs features)
let custom = null; // {head, labels, detector}: classes trained (or loaded) in this browser
let lastTraining = null; // what the download's metadata.json records
// All TF.js work goes through this: a backend timing step switches TF.js's global backend for
// a moment, and nothing else may run on the wrong one meanwhile.
const lock = new Mutex();
const HEAD = folderParam('head');
const HEAD_BASE = HEAD.base;
const stats = { frames: 0, videoFrames: 0, lastProbabilities: null, timing: 'not started' };
window.visionStats = stats; // read by tests and curious visitors
// The current head on given features (tests compare it with the same recipe in Keras).
window.visionHead = async (features) => Array.from(
  await lock.run(() => headProbabilities(tf, custom.head, Float32Array.from(features))));
// The current head's "unknown" detector (tests compare it with vision/trust/ood.py).
window.visionDetector = () => (custom?.detector ? { threshold: custom.detector.threshold,
  references: custom.detector.references.length, acceptRate: custom.detector.acceptRate } : null);

let card = null; // what the app says of its model (model/card.json): title, description, classes, figures

/** "a, b or c", or "a, b, ... and 992 more" past `limit` classes. */
function classList(labels, limit = 8) {
  if (labels.length > limit) return `${labels.slice(0, limit).join(', ')} and ${labels.length - limit} more`;
  return labels.length > 1 ? `${labels.slice(0, -1).join(', ')} or ${labels[labels.length - 1]}` : labels.join('');
}

/** The model's title, description, classes and figures, from card.json beside it (absent on an exported site). */
async function presentModel() {
  try {
    const response = await fetch(`${MODEL_BASE}/card.json`);
    card = response.ok ? await response.json() : null;
  } catch (error) {
    card = null;
  }
  const title = card?.title || meta.name;
  $('title').textContent = title;
  document.title = `${title} — in your browser`;
  $('description').textContent = card?.description || '';
  $('description').hidden = !card?.description;
  $('classes').textContent = `Knows: ${classList(meta.labels).replace(' or ', ', ')}`;
  $('classes').hidden = false;
  const figures = [];
  if (typeof card?.accuracy === 'number') figures.push(`${Math.round(card.accuracy * 100)}% right on validation photos`);
  if (card?.images) figures.push(`trained on ${card.images} photos`);
  if (card) figures.push(card.calibrated ? 'confidence calibrated' : 'confidence not calibrated');
  if (card?.author) figures.push(`made by ${card.author}`);
  $('figures').textContent = figures.join(' · ');
}

/** Note how long after the page opened (ms) step `name` finished: the bench prints the start-up's steps. */
function mark(name) {
  stats.marks = { ...stats.marks, [name]: Math.round(performance.now()) };
}

/** Resolve when the page has a free moment (an idle slot, or 50 ms at the latest). */
function idle() {
  return new Promise((resolve) => {
    if (window.requestIdleCallback) requestIdleCallback(() => resolve(), { timeout: 50 });
    else setTimeout(resolve, 0);
  });
}

async function main() {
  mark('script');
  try {
    if (MODEL.refused) throw new Error(MODEL.refused);
    tf.wasm?.setWasmPaths(new URL('node_modules/@tensorflow/tfjs-backend-wasm/dist/', location.href).href);
    tf.env().set('SOFTWARE_WEBGL_ENABLED', true); // headless and GPU-less machines: SwiftShader
    const response = await fetch(`${MODEL_BASE}/metadata.json`);
    if (!response.ok) throw new Error(`cannot load ${MODEL_BASE}/metadata.json (HTTP ${response.status})`);
    meta = parseMetadata(await response.json());
    const artifacts = await fetchArtifacts(MODEL_BASE);
    mark('model fetched');
    const forced = params.get('backend');
    // Measured once per browser and model; ?remeasure measures again.
    const key = `vision-backend|${meta.name}|${navigator.userAgent}`;
    const remembered = BACKENDS.includes(forced) || params.has('remeasure') ? null
      : JSON.parse(localStorage.getItem(key) || 'null');
    // Answer first: start on the backend asked for, or remembered, or wasm (it starts
    // everywhere, and quickly); time the others only once the page is answering.
    const first = BACKENDS.includes(forced) ? forced
      : BACKENDS.includes(remembered?.backend) ? remembered.backend : 'wasm';
    const backend = await pickBackend(tf, backendOrder(first));
    mark(`${backend} started`);
    const chosen = prepare(artifacts, backend);
    mark('model loaded');
    await chosen.warm(); // the first prediction's stall (shaders, uploads) is paid here, not on a user's image
    mark('warm');
    model = chosen.model;
    showBackend(backend);
    await presentModel();
    $('status').textContent = `Ready: ${meta.labels.length} classes${meta.quantization ? `, ${meta.quantization} weights` : ''}`;
    $('camera').disabled = false;
    if (meta.featureSize) {
      bank = new FeatureBank(meta.featureSize);
      $('trainer').hidden = false;
      window.visionBank = bank; // read by tests
      if (HEAD.base || HEAD.refused) await loadHead(null);
    }
    stats.readyTensors = tf.memory().numTensors;
    stats.readyAt = performance.now();
    document.body.dataset.ready = 'true';
    if (pendingFile) await classifyFile(pendingFile);
    if (BACKENDS.includes(forced)) {
      $('backend-times').textContent = '(chosen by ?backend=)';
      finishTiming('forced');
    } else if (remembered) {
      stats.backendTimes = remembered.times;
      $('backend-times').textContent = `${describeTimes(remembered.times)} (measured on your first visit)`;
      finishTiming('remembered');
    } else {
      await timeOthers(artifacts, backend, key);
    }
  } catch (error) {
    $('status').textContent = `Could not start: ${error.message}`;
    document.body.dataset.ready = 'error';
  }
}

/**
 * A copy of the model on backend `name` (TF.js must be on it now: this is synchronous),
 * with `warm` (compile its shaders, in parallel where the backend can, then one whole
 * prediction on a blank image twice the input size, so the resize path is warmed too) and
 * `run` (one such prediction); each holds `lock` only while it dispatches work.
 */
function prepare(artifacts, name) {
  const candidate = tf.loadGraphModelSync(artifacts);
  const predict = () => {
    const outputs = tf.tidy(() => candidate.predict(
      preprocess(tf, tf.zeros([meta.height * 2, meta.width * 2, 3], 'int32'), meta)));
    return Array.isArray(outputs) ? outputs : [outputs];
  };
  const run = async () => {
    const outputs = await lock.run(() => onBackend(tf, name, predict));
    await Promise.all(outputs.map((t) => t.data()));
    tf.dispose(outputs);
  };
  const warm = async () => {
    await compileInParallel(name, predict);
    await run();
  };
  return { model: candidate, run, warm, dispose: () => candidate.dispose() };
}

/**
 * Compile a GPU backend's shaders without blocking the page: TF.js's compile-only mode
 * queues every shader of one prediction, the GPU process compiles them (WebGL's
 * KHR_parallel_shader_compile, WebGPU's async pipelines) while the page goes on, and only
 * then does a prediction run. Nothing to do on wasm and cpu; any failure leaves the
 * ordinary warm-up (compiling on first use) to do it.
 */
async function compileInParallel(name, predict) {
  const flag = { webgl: 'ENGINE_COMPILE_ONLY', webgpu: 'WEBGPU_ENGINE_COMPILE_ONLY' }[name];
  const backend = tf.findBackend(name);
  if (!flag || !backend?.checkCompileCompletionAsync) return;
  try {
    await lock.run(() => onBackend(tf, name, () => {
      tf.env().set(flag, true);
      try {
        tf.dispose(predict());
      } finally {
        tf.env().set(flag, false);
      }
    }));
    await backend.checkCompileCompletionAsync();
    if (name === 'webgl') await lock.run(() => backend.getUniformLocations());
  } catch (error) {
    tf.env().set(flag, false);
  }
}

/**
 * Time every other backend in small steps while the page answers on `current` (see
 * measureBackends), show each figure as it arrives, and move to one only when it is
 * CLEARLY_FASTER; remember the outcome, so the next visit starts on it at once.
 */
async function timeOthers(artifacts, current, key) {
  stats.timing = 'running';
  document.body.dataset.timing = 'running';
  mark('timing started');
  // cpu runs a whole prediction synchronously in JavaScript (seconds of a frozen page)
  // and is never faster than wasm's SIMD kernels: timed only where wasm could not start.
  const names = [current, ...BACKENDS.filter((b) => b !== current && !(b === 'cpu' && current === 'wasm'))];
  const skipped = current === 'wasm' ? [{ name: 'cpu', ms: null, skipped: true }] : [];
  const show = (results) => {
    stats.backendTimes = [...results, ...skipped];
    const left = names.slice(results.length);
    $('backend-times').textContent = describeTimes(stats.backendTimes)
      + (left.length ? ` · timing ${left.join(', ')}…` : '');
  };
  show([]);
  const { results, winner, trial } = await measureBackends(tf, {
    current, names, lock, idle,
    prepare: (name) => (name === current ? prepareLive(current) : prepare(artifacts, name)),
    onResult: (result, all) => show(all),
  });
  if (winner) {
    await lock.run(() => {
      switchNow(tf, winner);
      const old = model;
      model = trial.model; // warmed by its timing runs: no shader compilation on a user's image
      old.dispose();
    });
    showBackend(winner);
  }
  const times = [...results, ...skipped];
  localStorage.setItem(key, JSON.stringify({ backend: winner || current, times }));
  $('backend-times').textContent = `${describeTimes(times)} (${winner ? `moved to ${winner}: at least`
    : `kept ${current}: nothing else was`} ${CLEARLY_FASTER}x faster)`;
  finishTiming('done');
}

/** `prepare`'s run and warm for the model the page already answers with (warm already; kept after timing). */
function prepareLive(name) {
  const predict = () => {
    const outputs = tf.tidy(() => model.predict(
      preprocess(tf, tf.zeros([meta.height * 2, meta.width * 2, 3], 'int32'), meta)));
    return Array.isArray(outputs) ? outputs : [outputs];
  };
  return {
    model,
    warm: async () => {},
    run: async () => {
      const outputs = await lock.run(() => onBackend(tf, name, predict));
      await Promise.all(outputs.map((t) => t.data()));
      tf.dispose(outputs);
    },
    dispose: () => {},
  };
}

function showBackend(name) {
  stats.backend = name;
  $('backend').textContent = name;
}

/** Timing is over (`state`: done, remembered or forced); tests and the bench wait for this. */
function finishTiming(state) {
  mark('timing over');
  stats.timing = state;
  document.body.dataset.timing = state;
}

/** The model's outputs for one image, as arrays: probabilities, familiarity, features. */
function run(source) {
  // Under the lock from dispatch to read: a timing step never switches backends in between.
  return lock.run(async () => {
    const outputs = tf.tidy(() => splitOutputs(
      model.predict(preprocess(tf, overWhite(tf, tf.browser.fromPixels(source, 4)), meta)), meta.labels.length));
    const [probabilities, familiarity, features] = await Promise.all(
      [outputs.probabilities, outputs.familiarity, outputs.features].map((t) => (t ? t.data() : null)));
    tf.dispose(Object.values(outputs).filter(Boolean));
    return { probabilities, familiarity: familiarity ? familiarity[0] : null, features };
  });
}

/** Classify any source tf.browser.fromPixels accepts, with the classes trained here if any. */
async function classify(source) {
  const started = performance.now();
  const answer = await run(source);
  let { probabilities, familiarity } = answer;
  let labels = meta.labels;
  let threshold = meta.unknownThreshold;
  if (custom) {
    probabilities = await lock.run(() => headProbabilities(tf, custom.head, answer.features));
    // The everyday model's detector says nothing about classes trained here: their own does.
    familiarity = custom.detector ? knnFamiliarity(custom.detector, answer.features) : null;
    threshold = custom.detector ? custom.detector.threshold : null;
    labels = custom.labels;
  }
  const elapsed = performance.now() - started;
  stats.lastProbabilities = Array.from(probabilities);
  stats.lastFamiliarity = familiarity;
  stats.lastFeatures = answer.features;
  stats.numTensors = tf.memory().numTensors;
  render(probabilities, familiarity, threshold, elapsed, labels);
  if (stats.firstAnswer === undefined) {
    // What tests check: the page answered before (or while) it timed the other backends.
    stats.firstAnswer = { at: performance.now(), timing: stats.timing, timed: (stats.backendTimes || []).length };
    mark('first answer');
  }
  return probabilities;
}

function render(probabilities, familiarity, threshold, elapsed, labels) {
  const results = $('results');
  const unknown = isUnknown(familiarity, { unknownThreshold: threshold });
  results.dataset.probabilities = JSON.stringify(Array.from(probabilities));
  results.dataset.unknown = String(unknown);
  const verdict = $('verdict');
  verdict.hidden = !unknown;
  $('verdict-details').hidden = familiarity === null || familiarity === undefined || threshold === null;
  if (!$('verdict-details').hidden) {
    $('verdict-numbers').textContent = `Familiarity ${familiarity.toFixed(3)} (threshold ${threshold.toFixed(3)})`
      + (unknown ? ': below it, the image is unlike anything the model was trained on.' : '.');
  }
  if (unknown) {
    // Plain words for a visitor; the numbers are one click away (Details).
    const nearest = topK(probabilities, labels, 1)[0].label;
    verdict.textContent = `Not sure: this does not look like ${classList(labels)} (the photos it learned from). `
      + `Nearest class: ${nearest}.`;
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
  if (!file) return;
  if (!model) {
    pendingFile = file; // answered the moment the model is warm
    $('status').textContent = `${file.name} will be classified as soon as the model is ready…`;
    return;
  }
  pendingFile = null;
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

/** Count the frames the browser shows (not only those classified): the bench's webcam frame rate. */
function countVideoFrames(video) {
  if (!video.requestVideoFrameCallback) return;
  const counted = (now, frame) => {
    stats.videoFrames = frame.presentedFrames;
    if (streaming) video.requestVideoFrameCallback(counted);
  };
  video.requestVideoFrameCallback(counted);
}

let starting = null; // the camera's start, while under way (a held record button waits for it)

/** Start the webcam and the live loop; false when there is no camera (the reason is shown). */
async function startCamera() {
  if (streaming) return true;
  starting ??= openCamera();
  try {
    return await starting;
  } finally {
    starting = null;
  }
}

async function openCamera() {
  const video = $('video');
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
  countVideoFrames(video);
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

/** A small square picture of `source` (centre crop) for the class's gallery, as a data: URL. */
function thumbnail(source) {
  const width = source.videoWidth || source.width;
  const height = source.videoHeight || source.height;
  const side = Math.min(width, height);
  const canvas = document.createElement('canvas');
  canvas.width = THUMBNAIL;
  canvas.height = THUMBNAIL;
  canvas.getContext('2d').drawImage(source, (width - side) / 2, (height - side) / 2, side, side,
    0, 0, THUMBNAIL, THUMBNAIL);
  return canvas.toDataURL('image/jpeg', 0.8);
}

/** Put one image through the model and keep its features, and a thumbnail, with class `index`. */
async function addExample(index, source) {
  const picture = thumbnail(source); // before the await: a video frame moves on
  const { features } = await run(source);
  if (!bank.classes[index]) return; // the class was deleted meanwhile
  bank.add(index, features, picture);
  stats.examples = (stats.examples || 0) + 1;
  changed();
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

let recording = null; // {index}: the class whose record button is held down

/**
 * Hold-to-record, as Teachable Machine does: while the button is held, every webcam frame
 * the page can take is added to class `index`; letting go (or leaving the button) stops.
 */
async function startRecording(index) {
  if (recording) return;
  const session = { index };
  recording = session;
  renderClasses();
  if (!(await startCamera())) {
    stopRecording();
    return;
  }
  const video = $('video');
  while (recording === session) {
    if (video.readyState >= 2) await addExample(index, video);
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
}

function stopRecording() {
  if (!recording) return;
  recording = null;
  renderClasses();
}

/** After any change to the classes: redraw them, and say when the head in use predates it. */
function changed() {
  renderClasses();
  if (custom?.fromBank) {
    $('train-status').textContent = 'The classes changed since training: train again to use the changes.';
  }
}

/** A button with a label and a click handler. */
function button(text, className, onClick) {
  const element = document.createElement('button');
  element.type = 'button';
  element.textContent = text;
  element.className = className;
  element.addEventListener('click', onClick);
  return element;
}

/** One card per class: its name (editable), count, record and file controls, and a gallery of its samples. */
function renderClasses() {
  $('classes').replaceChildren(...bank.classes.map((entry, index) => {
    const row = document.createElement('div');
    row.className = 'class-row drop';
    row.dataset.index = String(index);
    const head = document.createElement('div');
    head.className = 'class-head';
    const name = document.createElement('input');
    name.className = 'rename';
    name.value = entry.name;
    name.setAttribute('aria-label', `name of class ${index + 1}`);
    name.addEventListener('change', () => renameClass(index, name));
    const count = document.createElement('span');
    count.className = 'count';
    count.textContent = `${entry.features.length} images`;
    const held = recording?.index === index;
    const record = button(held ? 'Recording…' : 'Hold to record', 'record', () => {});
    record.classList.toggle('held', held);
    record.title = 'Press and hold: webcam frames are added while the button is held';
    record.addEventListener('pointerdown', (event) => {
      event.preventDefault();
      // Letting go anywhere stops: the cards are redrawn under the pointer as frames arrive.
      for (const type of ['pointerup', 'pointercancel', 'blur']) window.addEventListener(type, stopRecording, { once: true });
      startRecording(index);
    });
    record.addEventListener('pointerleave', stopRecording);
    record.addEventListener('keydown', (event) => {
      if ((event.key === ' ' || event.key === 'Enter') && !event.repeat) startRecording(index);
    });
    record.addEventListener('keyup', stopRecording);
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
    const remove = button('Delete class', 'delete-class', () => deleteClass(index));
    head.append(name, count, record, picker, remove);
    const gallery = document.createElement('div');
    gallery.className = 'gallery';
    gallery.append(...entry.thumbnails.map((src, sample) => {
      const thumb = button('', 'thumb', () => removeSample(index, sample));
      thumb.title = 'Remove this image';
      const image = document.createElement('img');
      image.alt = `${entry.name} ${sample + 1}`;
      if (src) image.src = src;
      thumb.append(image);
      return thumb;
    }));
    row.addEventListener('dragover', (event) => event.preventDefault());
    row.addEventListener('drop', (event) => {
      event.preventDefault();
      addFiles(index, [...event.dataTransfer.files]);
    });
    row.append(head, gallery);
    return row;
  }));
  $('train').disabled = bank.problem() !== null;
}

function removeSample(index, sample) {
  bank.remove(index, sample);
  changed();
}

function renameClass(index, input) {
  try {
    bank.rename(index, input.value);
    // A rename changes no features: the head trained on these classes answers with the new name at once.
    if (custom?.fromBank) {
      custom.labels = bank.labels;
      stats.headLabels = custom.labels;
    }
    renderClasses();
  } catch (error) {
    input.value = bank.classes[index].name;
    $('train-status').textContent = error.message;
  }
}

/** The head in use no longer matches the classes one for one: a rename stops reaching its answers. */
function detach() {
  if (custom) custom.fromBank = false;
}

function deleteClass(index) {
  if (recording?.index === index) stopRecording();
  bank.deleteClass(index);
  changed();
  detach();
}

function addClass() {
  try {
    bank.addClass($('class-name').value);
    $('class-name').value = '';
    renderClasses();
    detach();
  } catch (error) {
    $('train-status').textContent = error.message;
  }
}

/** Use `head` (a trained or loaded TF.js head) for every prediction from now on. */
function useHead(head, labels, source, detector, fromBank) {
  custom?.head.dispose();
  custom = { head, labels, detector, fromBank };
  $('title').textContent = `${labels.join(' · ')} (${source})`;
  $('everyday').hidden = false;
  stats.headLabels = labels;
}

let background = null; // the promise of background.json's rows (or null), fetched once

/**
 * Unrelated photos' features for the "unknown" threshold, as Python places it
 * (vision.trust.fit): from background.json beside the page, when it was made with this
 * page's model; null where there is none (an exported site), and the threshold is then the
 * training photos' own 5 % quantile alone.
 */
function backgroundFeatures() {
  background ??= fetch(new URL('background.json', location.href))
    .then((response) => (response.ok ? response.json() : null))
    .then((json) => backgroundRows(json, meta.name, meta.featureSize))
    .catch(() => null);
  return background;
}

async function train() {
  $('train').disabled = true;
  $('train-status').textContent = 'Training…';
  try {
    const trained = await lock.run(() => trainHead(tf, bank, undefined, (epoch) => {
      if (epoch % 20 === 0) $('train-status').textContent = `Training… epoch ${epoch + 1}`;
    }));
    // "Unknown": the same k-NN detector as a model trained in Python, on these images' features.
    const detector = fitKnn(bank.classes.flatMap((c) => c.features), [], await backgroundFeatures());
    useHead(trained.head, bank.labels, 'trained here', detector, true);
    lastTraining = trained;
    stats.trainings = (stats.trainings || 0) + 1;
    stats.trainSeconds = trained.seconds;
    $('train-status').textContent = `Trained on ${trained.count} images in ${trained.seconds.toFixed(1)} s `
      + `(loss ${trained.loss.toFixed(3)}). Predictions below now use your classes; an image whose features `
      + `are less alike than ${detector.threshold.toFixed(2)} (cosine) to every one of your photos is called unknown.`;
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
    saveFile('metadata.json', new Blob([JSON.stringify(headMetadata(meta, custom.labels, lastTraining, custom.detector), null, 2)],
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
      head = await lock.run(() => tf.loadLayersModel(tf.io.browserFiles([byName['head.json'], byName['head.weights.bin']])));
    } else {
      if (HEAD.refused) throw new Error(HEAD.refused);
      const response = await fetch(`${HEAD_BASE}/metadata.json`);
      if (!response.ok) throw new Error(`cannot load ${HEAD_BASE}/metadata.json (HTTP ${response.status})`);
      headMeta = await response.json();
      // metadata.json names the head's file: it, too, must be on this site.
      const headUrl = sameOriginUrl(headMeta.head || 'head.json', `${HEAD_BASE}/`, location.href);
      if (!headUrl) throw new Error('metadata.json names a head on another site; nothing was loaded');
      head = await lock.run(() => tf.loadLayersModel(headUrl));
    }
    if (headMeta.format !== 'tfjs-head' || headMeta.features?.size !== meta.featureSize) {
      head.dispose();
      throw new Error(`this head takes ${headMeta.features?.size} features; the page's model gives ${meta.featureSize}`);
    }
    useHead(head, headMeta.labels.map(String), 'loaded', detectorFromInfo(headMeta.unknown, meta.featureSize), false);
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
  $('title').textContent = card?.title || meta.name;
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
