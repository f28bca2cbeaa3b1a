// Training new classes in the browser, on the backbone's features: pure, no DOM access,
// TF.js passed in (Node's test runner checks it). Nothing leaves the browser.
//
// Each image goes through the page's model once; its pooled features (1280 numbers for
// EfficientNet-Lite0) are kept with its class. A softmax head (one dense layer) then trains
// on them: zero-initialised, full-batch Adam, a fixed number of epochs, so the result is
// deterministic and the same recipe in Keras gives the same answers.

/** The head's recipe; tests/test_web_training.py trains the same one in Keras. */
export const HEAD_RECIPE = { epochs: 100, learningRate: 0.001 };

/** Features per class, in the order classes were added. */
export class FeatureBank {
  constructor(featureSize) {
    this.featureSize = featureSize;
    this.classes = [];
  }

  addClass(name) {
    const clean = String(name).trim();
    if (!clean) throw new Error('name the class first');
    if (this.classes.some((c) => c.name === clean)) throw new Error(`there is already a class "${clean}"`);
    this.classes.push({ name: clean, features: [] });
    return this.classes.length - 1;
  }

  /** Add one image's features (a Float32Array of featureSize numbers) to class `index`. */
  add(index, features) {
    if (!this.classes[index]) throw new Error(`no class number ${index}`);
    if (features.length !== this.featureSize) {
      throw new Error(`expected ${this.featureSize} features, got ${features.length}`);
    }
    this.classes[index].features.push(Float32Array.from(features));
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
export function headMetadata(meta, labels, trained) {
  return {
    format: 'tfjs-head',
    name: `${labels.join(', ')} (trained in the browser)`,
    labels,
    head: 'head.json',
    features: { size: meta.featureSize, from: meta.name },
    training: { ...HEAD_RECIPE, images: trained.count, loss: trained.loss },
  };
}
