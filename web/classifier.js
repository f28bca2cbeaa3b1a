// Pure helpers for the page: metadata, preprocessing, top-k, backend choice, fps.
// No DOM access here, and TF.js is passed in, so Node's test runner can check all of it.

/**
 * Backends the page can run on; which is fastest depends on the machine, so it is measured.
 * wasm first: it starts everywhere and quickly, and its time lets slower ones be cut short.
 */
export const BACKENDS = ['wasm', 'webgpu', 'webgl', 'cpu'];

/**
 * `value` resolved against `base`, when it stays on the page's own site (same origin and
 * protocol as `page`); null otherwise. ?model= and ?head= go through this: a link must not
 * make a visitor's page fetch and run someone else's classifier under this page's title.
 * The page reads a visitor's own files with tf.io.browserFiles, never through a URL, so
 * blob: and data: URLs (other protocols, or an opaque origin) are refused too.
 * @param {string} value a URL, absolute or relative
 * @param {string} base what a relative `value` is resolved against
 * @param {string} [page] the page's own URL (defaults to `base`)
 * @returns {string|null} the absolute URL
 */
export function sameOriginUrl(value, base, page = base) {
  let url;
  try {
    url = new URL(value, base);
  } catch {
    return null;
  }
  const home = new URL(page);
  const same = home.origin !== 'null' && url.origin === home.origin && url.protocol === home.protocol;
  return same ? url.href : null;
}

/**
 * Validate an export's metadata.json and return what the page needs.
 * @param {object} meta parsed metadata.json
 * @returns {{name: string, labels: string[], height: number, width: number, scale: number, offset: number,
 *            quantization: string|null, unknownThreshold: number|null}}
 */
export function parseMetadata(meta) {
  if (!meta || !Array.isArray(meta.labels) || meta.labels.length < 2) {
    throw new Error('metadata.json: "labels" must list at least two classes');
  }
  const pre = meta.preprocessing || {};
  const [height, width] = pre.size || [meta.input?.height, meta.input?.width];
  if (!(height > 0 && width > 0)) throw new Error('metadata.json: missing input size');
  if (pre.resize && pre.resize !== 'bilinear') {
    throw new Error(`metadata.json: resize "${pre.resize}" is not supported (only bilinear)`);
  }
  if (pre.crop && pre.crop !== 'none' && pre.crop !== 'center') {
    throw new Error(`metadata.json: crop "${pre.crop}" is not supported (only center)`);
  }
  if (pre.channels && pre.channels !== 'RGB') {
    throw new Error(`metadata.json: ${pre.channels} input is not supported by this page (only RGB)`);
  }
  return {
    name: meta.name || 'model',
    labels: meta.labels.map(String),
    height,
    width,
    scale: pre.scale ?? 1 / 255,
    offset: pre.offset ?? 0,
    // Models imported from Teachable Machine see the centred square, as its library feeds them.
    centerCrop: pre.crop === 'center',
    quantization: meta.quantization ?? null,
    // The model's second output (familiarity) below this means "unknown" (vision.ood).
    unknownThreshold: typeof meta.unknown?.threshold === 'number' ? meta.unknown.threshold : null,
    // The pooled features, where the export outputs them: the page trains new classes on them.
    featureSize: meta.features?.size ?? null,
  };
}

/**
 * A graph model's outputs, in whatever order TF.js gives them, as {probabilities,
 * familiarity, features}: the familiarity has one column, the probabilities one per class
 * (at least two), the features the rest; null for those the export does not have.
 */
export function splitOutputs(outputs, classes) {
  const found = { probabilities: null, familiarity: null, features: null };
  for (const output of Array.isArray(outputs) ? outputs : [outputs]) {
    const columns = output.shape[output.shape.length - 1];
    if (columns === 1) found.familiarity = output;
    else if (columns === classes && !found.probabilities) found.probabilities = output;
    else found.features = output;
  }
  return found;
}

/** True when a familiarity score says the image is unlike the model's training images. */
export function isUnknown(familiarity, meta) {
  return familiarity !== null && meta.unknownThreshold !== null && familiarity < meta.unknownThreshold;
}

/**
 * Pixels (a tf.Tensor3D of 0..255, or anything tf.browser.fromPixels takes after the
 * caller converted it) to model input [1, H, W, 3]: the centred square where the model asks
 * for it, bilinear resize with half-pixel centres and no antialiasing, then value * scale +
 * offset — vision.images.preprocess.
 */
export function preprocess(tf, pixels, meta) {
  return tf.tidy(() => {
    let image = tf.cast(pixels, 'float32');
    if (meta.centerCrop) {
      const [h, w] = image.shape;
      const side = Math.min(h, w);
      image = image.slice([Math.floor((h - side) / 2), Math.floor((w - side) / 2), 0], [side, side, -1]);
    }
    const resized = tf.image.resizeBilinear(image, [meta.height, meta.width], false, true);
    return resized.mul(meta.scale).add(meta.offset).expandDims(0);
  });
}

/**
 * RGBA pixels ([h, w, 4], straight alpha) as RGB composited over white: what
 * vision.images.load_image does with transparent images, so both sides see the same picture.
 */
export function overWhite(tf, rgba) {
  return tf.tidy(() => {
    const pixels = tf.cast(rgba, 'float32');
    const alpha = pixels.slice([0, 0, 3], [-1, -1, 1]).div(255);
    return pixels.slice([0, 0, 0], [-1, -1, 3]).mul(alpha).add(alpha.neg().add(1).mul(255)).round();
  });
}

/**
 * The k most probable classes, most probable first (ties keep label order).
 * @param {ArrayLike<number>} probabilities
 * @param {string[]} labels
 * @param {number} k
 */
export function topK(probabilities, labels, k) {
  if (probabilities.length !== labels.length) {
    throw new Error(`model gave ${probabilities.length} outputs for ${labels.length} labels`);
  }
  return Array.from(probabilities, (probability, index) => ({ label: labels[index], probability, index }))
    .sort((a, b) => b.probability - a.probability || a.index - b.index)
    .slice(0, Math.max(1, k));
}

/** Backends to try: the requested one first if it is known, then the rest. */
export function backendOrder(requested) {
  return BACKENDS.includes(requested) ? [requested, ...BACKENDS.filter((b) => b !== requested)] : [...BACKENDS];
}

/**
 * Switch TF.js to the first backend that really starts. tf.setBackend can return false
 * and silently fall back, so the active backend is checked by name.
 */
export async function pickBackend(tf, order) {
  for (const name of order) {
    try {
      if ((await tf.setBackend(name)) && tf.getBackend() === name) return name;
    } catch (error) {
      // This backend cannot start here (no WebGL context, no WebAssembly): try the next.
    }
  }
  throw new Error(`no TensorFlow.js backend could start (tried ${order.join(', ')})`);
}

/**
 * How much faster another backend must be before the page moves to it: 1.5x (a third less
 * time per image). Timings taken beside a running page are noisy (a webcam frame's own work
 * can land inside one), and a switch costs memory and a second set of weights, so a near tie
 * keeps the backend the page already answers on.
 */
export const CLEARLY_FASTER = 1.5;

/** The middle value (the lower of the two middle ones for an even count). */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/**
 * The backend to switch to: the fastest measured one when it is at least `margin` times
 * faster than `current`; null when `current` should stay (or was not measured).
 * @param {{name: string, ms: number|null}[]} results
 */
export function clearlyFaster(results, current, margin = CLEARLY_FASTER) {
  const mine = results.find((r) => r.name === current)?.ms;
  if (mine === null || mine === undefined) return null;
  const best = results.filter((r) => r.name !== current && r.ms !== null)
    .reduce((fastest, r) => (fastest === null || r.ms < fastest.ms ? r : fastest), null);
  return best !== null && best.ms * margin < mine ? best.name : null;
}

/**
 * Runs async jobs one at a time, in the order they were asked for. TF.js has one global
 * backend: the page's own work (classify, train) and a timing step that switches backends
 * for a moment must never interleave, or a tensor would land on the wrong backend.
 */
export class Mutex {
  constructor() {
    this.tail = Promise.resolve();
  }

  /** Run `job` (sync or async) once every job asked for before it has finished; its result. */
  run(job) {
    const result = this.tail.then(() => job());
    this.tail = result.then(() => {}, () => {});
    return result;
  }
}

/**
 * Switch TF.js to an already started backend at once. tf.setBackend switches before its
 * first await when the backend is registered, so this needs no await and nothing can run
 * in between; the promise is only kept from reporting an unhandled rejection.
 */
export function switchNow(tf, name) {
  tf.setBackend(name)?.catch?.(() => {});
  if (tf.getBackend() !== name) throw new Error(`backend ${name} is not ready`);
}

/**
 * Run `fn` synchronously on backend `name`, then switch back, whatever happens: the
 * tensors `fn` makes live on `name` (TF.js records each tensor's backend, so reading and
 * disposing them later works from any backend).
 */
export function onBackend(tf, name, fn) {
  const previous = tf.getBackend();
  if (previous === name) return fn();
  switchNow(tf, name);
  try {
    return fn();
  } finally {
    switchNow(tf, previous);
  }
}

/**
 * Time the backends in `names` while the page keeps answering on `current`, in small steps
 * with `idle()` awaited before each: start the backend (under `lock`, since an async start
 * leaves TF.js without a usable backend for a moment), load a copy of the model on it, warm
 * it (shader compilation), then `runs` timed calls, one per step. Each step holds `lock`
 * only for its synchronous part; the GPU's own work is awaited without it, so a webcam
 * loop sharing `lock` goes on between steps. A backend already three times slower than the
 * best so far is not timed further.
 * @param {object} tf TF.js
 * @param {object} options
 * @param {string} options.current the backend the page runs on (timed too, on its live model)
 * @param {string[]} options.names the backends to time, `current` among them
 * @param {(name: string) => {warm: () => Promise<void>, run: () => Promise<void>, dispose: () => void}} options.prepare
 *   called synchronously with TF.js on `name`: a model of its own there
 * @param {Mutex} options.lock shared with the page's own TF.js work
 * @param {() => Promise<void>} options.idle resolves when the page has a free moment
 * @param {(result: {name: string, ms: number|null}, results: object[]) => void} [options.onResult] each figure as it arrives
 * @returns {Promise<{results: {name: string, ms: number|null}[], winner: string|null, trial: object|null}>}
 *   the median ms per backend (null where it did not start), the backend to switch to
 *   (`clearlyFaster`), and its warm model (the caller owns it; every other one is disposed)
 */
export async function measureBackends(tf, {
  current, names, prepare, lock, idle, runs = 3, margin = CLEARLY_FASTER, onResult = () => {},
}) {
  const results = [];
  const kept = new Map(); // warm trials that might still win
  let best = Infinity;
  for (const name of names) {
    let trial = null;
    let ms = null;
    try {
      if (name !== current) {
        await idle();
        const started = await lock.run(async () => {
          try {
            return (await tf.setBackend(name)) && tf.getBackend() === name;
          } finally {
            await tf.setBackend(current);
          }
        });
        if (!started) throw new Error(`${name} did not start`);
      }
      await idle();
      trial = await lock.run(() => onBackend(tf, name, () => prepare(name)));
      await idle();
      await trial.warm();
      const times = [];
      for (let i = 0; i < runs; i += 1) {
        await idle();
        const started = performance.now();
        await trial.run();
        times.push(performance.now() - started);
        if (times[i] > 3 * best) break;
      }
      ms = median(times);
      best = Math.min(best, ms);
    } catch (error) {
      ms = null; // this backend cannot run here (no adapter, no context, no WebAssembly)
    }
    const result = { name, ms };
    results.push(result);
    if (trial && ms !== null && name !== current) kept.set(name, trial);
    else disposeQuietly(trial);
    onResult(result, results);
  }
  const winner = clearlyFaster(results, current, margin);
  for (const [name, trial] of kept) if (name !== winner) disposeQuietly(trial);
  return { results, winner, trial: winner ? kept.get(winner) : null };
}

/** Free a trial's model; a backend that died cannot free its memory, and is not used again. */
function disposeQuietly(trial) {
  try {
    trial?.dispose();
  } catch (error) {
    // nothing to do: see above
  }
}

/**
 * "wasm 11.4 ms · webgl 324 ms · webgpu did not start · cpu not timed", fastest first;
 * `skipped` entries (not timed on purpose) last.
 */
export function describeTimes(results) {
  const rank = (r) => (r.skipped ? Infinity : r.ms ?? Number.MAX_VALUE);
  return [...results].sort((a, b) => rank(a) - rank(b))
    .map((r) => {
      if (r.skipped) return `${r.name} not timed`;
      if (r.ms === null) return `${r.name} did not start`;
      return `${r.name} ${r.ms < 100 ? r.ms.toFixed(1) : Math.round(r.ms)} ms`;
    })
    .join(' · ');
}

/** Frames per second over a sliding window of recent frame times (milliseconds). */
export class FpsMeter {
  constructor(window = 30) {
    this.window = window;
    this.times = [];
  }

  tick(now) {
    this.times.push(now);
    if (this.times.length > this.window) this.times.shift();
    return this.fps;
  }

  get fps() {
    const n = this.times.length;
    if (n < 2) return 0;
    const span = this.times[n - 1] - this.times[0];
    return span > 0 ? ((n - 1) * 1000) / span : 0;
  }
}

/** The quantization dtype of vision.webweights: uint8 with one affine range per channel. */
export const PER_CHANNEL = 'uint8-per-channel';
const STORED_BYTES = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

/**
 * Expand per-channel uint8 weights to float32 and pass the rest through untouched, so TF.js
 * (which knows only one range per tensor) can load them. Each per-channel tensor is stored
 * as uint8[n] (row-major), float32 min[C], float32 scale[C] for the C channels along `axis`.
 * @param {object[]} specs the weightsManifest entries, in shard order
 * @param {ArrayBuffer} buffer the shards, concatenated
 * @returns {{weightSpecs: object[], weightData: ArrayBuffer}}
 */
export function expandWeights(specs, buffer) {
  const parts = [];
  const weightSpecs = [];
  let offset = 0;
  for (const spec of specs) {
    const count = spec.shape.reduce((a, b) => a * b, 1);
    const quantization = spec.quantization;
    const perChannel = quantization?.dtype === PER_CHANNEL;
    const size = perChannel ? count + 8 * spec.shape[quantization.axis]
      : count * STORED_BYTES[quantization ? quantization.dtype : spec.dtype];
    if (!(size >= 0)) throw new Error(`weight ${spec.name}: cannot read dtype ${quantization?.dtype ?? spec.dtype}`);
    if (offset + size > buffer.byteLength) throw new Error(`weight ${spec.name} runs past the end of the shards`);
    if (!perChannel) {
      parts.push(new Uint8Array(buffer, offset, size));
      weightSpecs.push(spec);
      offset += size;
      continue;
    }
    const channels = spec.shape[quantization.axis];
    const inner = spec.shape.slice(quantization.axis + 1).reduce((a, b) => a * b, 1);
    const codes = new Uint8Array(buffer, offset, count);
    const mins = new Float32Array(buffer.slice(offset + count, offset + count + 4 * channels));
    const scales = new Float32Array(buffer.slice(offset + count + 4 * channels, offset + count + 8 * channels));
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const channel = Math.floor(i / inner) % channels;
      values[i] = codes[i] * scales[channel] + mins[channel];
    }
    parts.push(new Uint8Array(values.buffer));
    weightSpecs.push({ name: spec.name, shape: spec.shape, dtype: 'float32' });
    offset += size;
  }
  if (offset !== buffer.byteLength) throw new Error(`weights: the manifest reads ${offset} of ${buffer.byteLength} bytes`);
  const weightData = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    weightData.set(part, at);
    at += part.length;
  }
  return { weightSpecs, weightData: weightData.buffer };
}

/**
 * An export folder's model.json and weights, fetched once, per-channel uint8 weights expanded:
 * what `tf.io.fromMemory` takes, so each backend can load its own copy without refetching.
 * @param {string} base the folder's URL (no trailing slash)
 * @param {typeof fetch} fetchFn
 */
export async function fetchArtifacts(base, fetchFn = fetch) {
  const get = async (name) => {
    const response = await fetchFn(`${base}/${name}`);
    if (!response.ok) throw new Error(`cannot load ${base}/${name} (HTTP ${response.status})`);
    return response;
  };
  const { weightsManifest, ...artifacts } = await (await get('model.json')).json();
  const specs = weightsManifest.flatMap((group) => group.weights);
  const shards = await Promise.all(weightsManifest.flatMap((group) => group.paths)
    .map(async (path) => new Uint8Array(await (await get(path)).arrayBuffer())));
  const joined = new Uint8Array(shards.reduce((total, shard) => total + shard.length, 0));
  shards.reduce((at, shard) => (joined.set(shard, at), at + shard.length), 0);
  return { ...artifacts, ...expandWeights(specs, joined.buffer) };
}
