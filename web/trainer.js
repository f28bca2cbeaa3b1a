// Training new classes in the browser, on the backbone's features: pure, no DOM access,
// TF.js passed in (Node's test runner checks it). Nothing leaves the browser.
//
// Each image goes through the page's model once; its pooled features (1280 numbers for
// EfficientNet-Lite0) are kept with its class. A softmax head (one dense layer) then trains
// on them: zero-initialised, full-batch Adam, a fixed number of epochs, so the result is
// deterministic and the same recipe in Keras gives the same answers.

/** The head's recipe; tests/test_web_training.py trains the same one in Keras. */
export const HEAD_RECIPE = { epochs: 100, learningRate: 0.001 };

/**
 * Features per class, in the order classes were added, each image's beside an optional
 * thumbnail (whatever the page shows for it: here a data: URL).
 */
export class FeatureBank {
  constructor(featureSize) {
    this.featureSize = featureSize;
    this.classes = [];
  }

  /** A class name as stored: trimmed, not empty, not already taken (by another class than `except`). */
  checkName(name, except = -1) {
    const clean = String(name).trim();
    if (!clean) throw new Error('name the class first');
    if (this.classes.some((c, index) => c.name === clean && index !== except)) {
      throw new Error(`there is already a class "${clean}"`);
    }
    return clean;
  }

  addClass(name) {
    this.classes.push({ name: this.checkName(name), features: [], thumbnails: [] });
    return this.classes.length - 1;
  }

  /** Add one image's features (a Float32Array of featureSize numbers) to class `index`. */
  add(index, features, thumbnail = null) {
    this.entry(index);
    if (features.length !== this.featureSize) {
      throw new Error(`expected ${this.featureSize} features, got ${features.length}`);
    }
    this.classes[index].features.push(Float32Array.from(features));
    this.classes[index].thumbnails.push(thumbnail);
  }

  /** Remove image `sample` of class `index` (a bad photo, a blurred frame). */
  remove(index, sample) {
    const entry = this.entry(index);
    if (!(sample >= 0 && sample < entry.features.length)) throw new Error(`class "${entry.name}" has no image ${sample}`);
    entry.features.splice(sample, 1);
    entry.thumbnails.splice(sample, 1);
  }

  /** Give class `index` another name; its images stay. */
  rename(index, name) {
    this.entry(index).name = this.checkName(name, index);
  }

  /** Delete class `index` and its images; the classes after it move up one place. */
  deleteClass(index) {
    this.entry(index);
    this.classes.splice(index, 1);
  }

  /** Class `index`, or an error naming it. */
  entry(index) {
    if (!this.classes[index]) throw new Error(`no class number ${index}`);
    return this.classes[index];
  }

  get labels() {
    return this.classes.map((c) => c.name);
  }

  /** Why training cannot start yet, or null. */
  problem() {
    if (this.classes.length < 2) return 'add at least two classes';
    const empty = this.classes.find((c) => c.features.length === 0);
    return empty ? `class "${empty.name}" has no images yet` : null;
  }

  /** All features as one row-major Float32Array, with their class numbers. */
  matrix() {
    const rows = this.classes.flatMap((c, label) => c.features.map((f) => ({ f, label })));
    const x = new Float32Array(rows.length * this.featureSize);
    rows.forEach((row, i) => x.set(row.f, i * this.featureSize));
    return { x, labels: rows.map((row) => row.label), count: rows.length };
  }
}

// -- "Unknown": the k-NN detector of vision/trust/ood.py, on the same pooled features ------

/** Share of held-out in-distribution images the threshold accepts (ood.ACCEPT). */
export const ACCEPT = 0.95;
/** Held-out images enough to place the threshold on their own (ood.ENOUGH_HELD_OUT). */
export const ENOUGH_HELD_OUT = 40;
/** Reference features kept (ood.MAX_REFERENCES). */
export const MAX_REFERENCES = 2000;

/**
 * numpy.quantile's default ("linear"): the value at position q * (n - 1) of the sorted
 * values, interpolated between its two neighbours.
 */
export function quantile(values, q) {
  if (!values.length) throw new Error('quantile of nothing');
  const sorted = Float64Array.from(values).sort();
  const position = q * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
}

/** Each row divided by its length (+1e-12 under the root, as ood._unit), as float32. */
export function unitRows(rows) {
  return rows.map((row) => {
    let sum = 0;
    for (let i = 0; i < row.length; i += 1) sum += row[i] * row[i];
    const norm = Math.fround(Math.sqrt(Math.fround(sum) + 1e-12));
    return Float32Array.from(row, (value) => value / norm);
  });
}

function dot(a, b) {
  let sum = 0;
  for (let i = 0; i < a.length; i += 1) sum += a[i] * b[i];
  return sum;
}

/** Cosine similarity of each row to its nearest unit-length reference (skipping reference `skip[i]`). */
function nearest(units, references, skip = null) {
  return units.map((unit, i) => references.reduce(
    (best, reference, j) => (skip && skip[i] === j ? best : Math.max(best, dot(unit, reference))), -Infinity));
}

/**
 * A k-NN ("knn-cosine", k = 1) detector, fitted as ood.fit_knn fits it: the familiarity of
 * an image is the cosine similarity of its pooled features to the nearest training image's;
 * the threshold accepts ACCEPT of the held-out images, and with fewer than ENOUGH_HELD_OUT
 * of them each training image's similarity to its nearest *other* training image counts as
 * held out too; where background (unrelated) photos score far below, it moves to the middle
 * of that gap, never stricter than the held-out quantile. Past MAX_REFERENCES training
 * images Python keeps a seeded random sample; this keeps evenly spaced ones (the page never
 * gets near that many).
 * @param {Float32Array[]} train training images' features
 * @param {Float32Array[]} [heldOut] held-out images' features (the page has none: every photo trains)
 * @param {Float32Array[]|null} [background] unrelated photos' features
 * @returns {{method: string, threshold: number, references: Float32Array[], acceptRate: number, heldOut: number}}
 */
export function fitKnn(train, heldOut = [], background = null, accept = ACCEPT) {
  let references = unitRows(train);
  if (references.length > MAX_REFERENCES) {
    const step = references.length / MAX_REFERENCES;
    references = Array.from({ length: MAX_REFERENCES }, (_, i) => references[Math.floor(i * step)]);
  }
  const scores = heldOut.length ? nearest(unitRows(heldOut), references) : [];
  if (heldOut.length < ENOUGH_HELD_OUT && references.length > 1) {
    scores.push(...nearest(references, references, references.map((_, i) => i)));
  }
  let threshold = quantile(scores, 1 - accept);
  if (background?.length) {
    const far = quantile(nearest(unitRows(background), references), accept);
    threshold = Math.min(threshold, (threshold + far) / 2);
  }
  const acceptRate = scores.filter((score) => score >= threshold).length / scores.length;
  return { method: 'knn-cosine', threshold, references, acceptRate, heldOut: scores.length };
}

/** An image's familiarity under `detector`: cosine similarity to the nearest training image. */
export function familiarity(detector, features) {
  return nearest(unitRows([features]), detector.references)[0];
}

/** Rows of `size` float32 numbers from base64 (row after row); null when the byte count does not fit. */
function rowsFromBase64(text, count, size) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const flat = new Float32Array(bytes.buffer);
  if (flat.length !== count * size) return null;
  return Array.from({ length: count }, (_, i) => flat.slice(i * size, (i + 1) * size));
}

/**
 * background.json's unrelated photos' features (the ones vision.trust.fit places Python's
 * threshold with), when they were computed by this page's model: same name, same feature
 * size; null otherwise (another model's features would mean nothing here).
 */
export function backgroundRows(json, modelName, featureSize) {
  if (!json || json.model !== modelName || json.size !== featureSize || typeof json.features !== 'string') return null;
  return rowsFromBase64(json.features, json.count, featureSize);
}

/** The detector as metadata.json's "unknown" (references as base64 float32, row after row). */
export function detectorInfo(detector) {
  const flat = new Float32Array(detector.references.reduce((n, r) => n + r.length, 0));
  detector.references.reduce((at, row) => (flat.set(row, at), at + row.length), 0);
  const bytes = new Uint8Array(flat.buffer);
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return {
    method: detector.method, threshold: detector.threshold, accept_rate: detector.acceptRate,
    held_out_images: detector.heldOut, references: detector.references.length, features: btoa(binary),
  };
}

/** `detectorInfo`'s output back as a detector; null when there is none or it does not fit `featureSize`. */
export function detectorFromInfo(info, featureSize) {
  if (info?.method !== 'knn-cosine' || typeof info.threshold !== 'number' || typeof info.features !== 'string') return null;
  const references = rowsFromBase64(info.features, info.references, featureSize);
  if (!references) return null;
  return { method: info.method, threshold: info.threshold, references, acceptRate: info.accept_rate, heldOut: info.held_out_images };
}

/** A softmax head: dense layer from the features to the classes, zero-initialised. */
export function buildHead(tf, featureSize, classes) {
  return tf.sequential({
    name: 'head',
    layers: [tf.layers.dense({
      inputShape: [featureSize], units: classes, activation: 'softmax', name: 'logits',
      kernelInitializer: 'zeros', biasInitializer: 'zeros',
    })],
  });
}

/**
 * Train a new head on the bank's features (full batch, HEAD_RECIPE).
 * @returns {Promise<{head: object, count: number, loss: number, seconds: number}>} the caller owns
 *   `head` (dispose it)
 */
export async function trainHead(tf, bank, recipe = HEAD_RECIPE, onEpoch = null) {
  const problem = bank.problem();
  if (problem) throw new Error(problem);
  const started = performance.now();
  const { x, labels, count } = bank.matrix();
  const head = buildHead(tf, bank.featureSize, bank.classes.length);
  const optimizer = tf.train.adam(recipe.learningRate);
  head.compile({ optimizer, loss: 'categoricalCrossentropy' });
  const xs = tf.tensor2d(x, [count, bank.featureSize]);
  const labelTensor = tf.tensor1d(labels, 'int32');
  const ys = tf.oneHot(labelTensor, bank.classes.length);
  try {
    const history = await head.fit(xs, ys, {
      epochs: recipe.epochs, batchSize: count, shuffle: false, verbose: 0,
      callbacks: onEpoch ? { onEpochEnd: (epoch, logs) => onEpoch(epoch, logs) } : undefined,
    });
    const losses = history.history.loss;
    return { head, count, loss: losses[losses.length - 1], seconds: (performance.now() - started) / 1000 };
  } finally {
    tf.dispose([xs, labelTensor, ys]);
    optimizer.dispose();
  }
}

/** The head's class probabilities for one image's features. */
export async function headProbabilities(tf, head, features) {
  const output = tf.tidy(() => head.predict(tf.tensor2d(features, [1, features.length])));
  const probabilities = await output.data();
  output.dispose();
  return probabilities;
}

/** metadata.json for a downloaded head: its labels, and the backbone whose features it takes. */
export function headMetadata(meta, labels, trained, detector = null) {
  return {
    format: 'tfjs-head',
    name: `${labels.join(', ')} (trained in the browser)`,
    labels,
    head: 'head.json',
    features: { size: meta.featureSize, from: meta.name },
    training: { ...HEAD_RECIPE, images: trained.count, loss: trained.loss },
    ...(detector ? { unknown: detectorInfo(detector) } : {}),
  };
}
