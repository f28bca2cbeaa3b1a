// Pure helpers for the page: metadata, preprocessing, top-k, backend choice, fps.
// No DOM access here, and TF.js is passed in, so Node's test runner can check all of it.

/** Backends in order of preference. */
export const BACKENDS = ['webgl', 'wasm', 'cpu'];

/**
 * Validate an export's metadata.json and return what the page needs.
 * @param {object} meta parsed metadata.json
 * @returns {{name: string, labels: string[], height: number, width: number, scale: number, offset: number,
 *            quantization: string|null}}
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
  return {
    name: meta.name || 'model',
    labels: meta.labels.map(String),
    height,
    width,
    scale: pre.scale ?? 1 / 255,
    offset: pre.offset ?? 0,
    quantization: meta.quantization ?? null,
  };
}

/**
 * Pixels (a tf.Tensor3D of 0..255, or anything tf.browser.fromPixels takes after the
 * caller converted it) to model input [1, H, W, 3]: bilinear resize with half-pixel
 * centres and no antialiasing, then value * scale + offset — vision.images.preprocess.
 */
export function preprocess(tf, pixels, meta) {
  return tf.tidy(() => {
    const image = tf.cast(pixels, 'float32');
    const resized = tf.image.resizeBilinear(image, [meta.height, meta.width], false, true);
    return resized.mul(meta.scale).add(meta.offset).expandDims(0);
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

/** Backends to try: the requested one first if it is known, then the usual order. */
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
