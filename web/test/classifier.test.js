// node --test: the page's pure module, with real TF.js (cpu backend) under Node.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import {
  FpsMeter, PER_CHANNEL, backendOrder, describeTimes, expandWeights, fastestBackend, isUnknown, overWhite,
  parseMetadata, pickBackend, preprocess, sameOriginUrl, splitOutputs, timeBackends, topK,
} from '../classifier.js';

const META = {
  name: 'shapes', labels: ['circle', 'square', 'star', 'triangle'],
  preprocessing: { size: [2, 2], scale: 1 / 255, offset: 0, resize: 'bilinear' },
};

test('parseMetadata reads what the exporter writes and refuses what it cannot use', () => {
  const meta = parseMetadata(META);
  assert.deepEqual([meta.height, meta.width, meta.labels.length], [2, 2, 4]);
  assert.equal(meta.scale, 1 / 255);
  assert.throws(() => parseMetadata({ labels: ['one'] }), /at least two/);
  assert.throws(() => parseMetadata({ ...META, preprocessing: { size: [2, 2], resize: 'nearest' } }), /bilinear/);
  assert.throws(() => parseMetadata({ labels: ['a', 'b'], preprocessing: {} }), /input size/);
});

test('preprocess resizes with half-pixel centres and scales like vision.images.preprocess', async () => {
  await tf.setBackend('cpu');
  const pixels = tf.tensor3d([0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255], [1, 4, 3], 'int32');
  const meta = { ...parseMetadata(META), height: 1, width: 2, scale: 2 / 255, offset: -1 };
  const before = tf.memory().numTensors;
  const out = preprocess(tf, pixels, meta);
  assert.deepEqual(out.shape, [1, 1, 2, 3]);
  // Half-pixel centres sample source x = 0.5 and 2.5: halfway between 0 and 255 -> 127.5 -> 0.
  const values = await out.data();
  for (const value of values) assert.ok(Math.abs(value) < 1e-6, `got ${value}`);
  out.dispose();
  assert.equal(tf.memory().numTensors, before, 'preprocess leaked tensors');
  // Same size: identity up to the scaling.
  const same = preprocess(tf, pixels, { ...meta, height: 1, width: 4, scale: 1, offset: 0 });
  assert.deepEqual(Array.from(await same.data()), Array.from(await pixels.data()));
  same.dispose();
  pixels.dispose();
});

test('topK sorts, cuts and keeps label order on ties', () => {
  const result = topK([0.1, 0.4, 0.4, 0.1], META.labels, 3);
  assert.deepEqual(result.map((r) => r.label), ['square', 'star', 'circle']);
  assert.equal(topK([0.2, 0.8, 0, 0], META.labels, 0).length, 1);
  assert.throws(() => topK([1, 0], META.labels, 2), /2 outputs for 4 labels/);
});

test('backendOrder puts a known request first', () => {
  assert.deepEqual(backendOrder('webgl'), ['webgl', 'wasm', 'webgpu', 'cpu']);
  assert.deepEqual(backendOrder('nonsense'), ['wasm', 'webgpu', 'webgl', 'cpu']);
});

test('pickBackend skips backends that cannot start and reports the real one', async () => {
  // Under Node there is no WebGL and no wasm backend registered: it must land on cpu.
  assert.equal(await pickBackend(tf, ['webgl', 'wasm', 'cpu']), 'cpu');
  await assert.rejects(pickBackend(tf, ['webgl']), /no TensorFlow.js backend could start/);
});

test('FpsMeter measures a steady rate', () => {
  const meter = new FpsMeter(10);
  for (let i = 0; i < 10; i += 1) meter.tick(i * 50);
  assert.ok(Math.abs(meter.fps - 20) < 1e-9);
});

test('expandWeights decodes per-channel uint8 and passes the rest through', async () => {
  // A [1, 2] kernel with channels on axis 1 (codes 0 and 255), then a float16 vector [1, -2].
  const bytes = new Uint8Array(2 + 16 + 4);
  bytes.set([0, 255], 0);
  new DataView(bytes.buffer).setFloat32(2, -1, true); // min, channel 0
  new DataView(bytes.buffer).setFloat32(6, 10, true); // min, channel 1
  new DataView(bytes.buffer).setFloat32(10, 0.5, true); // scale, channel 0
  new DataView(bytes.buffer).setFloat32(14, 2 / 255, true); // scale, channel 1
  bytes.set([0x00, 0x3c, 0x00, 0xc0], 18); // float16 1.0 and -2.0, little-endian
  const specs = [
    { name: 'kernel', shape: [1, 2], dtype: 'float32', quantization: { dtype: PER_CHANNEL, axis: 1 } },
    { name: 'bias', shape: [2], dtype: 'float32', quantization: { dtype: 'float16' } },
  ];
  const { weightSpecs, weightData } = expandWeights(specs, bytes.buffer);
  assert.deepEqual(weightSpecs.map((s) => s.quantization?.dtype ?? s.dtype), ['float32', 'float16']);
  const tensors = tf.io.decodeWeights(weightData, weightSpecs);
  assert.deepEqual(Array.from(await tensors.kernel.data()), [-1, 12]);
  assert.deepEqual(Array.from(await tensors.bias.data()), [1, -2]);
  // TF.js alone refuses the unknown dtype rather than misreading the bytes.
  assert.throws(() => tf.io.decodeWeights(bytes.buffer, specs));
  assert.throws(() => expandWeights(specs, bytes.buffer.slice(0, 20)), /bias runs past the end of the shards/);
});

test('splitOutputs finds the familiarity column whatever the order, and isUnknown reads the threshold', () => {
  const probabilities = tf.tensor2d([[0.7, 0.3]]);
  const familiarity = tf.tensor2d([[0.2]]);
  const features = tf.tensor2d([[1, 2, 3, 4]]);
  assert.equal(splitOutputs([familiarity, probabilities], 2).familiarity, familiarity);
  assert.equal(splitOutputs([features, probabilities, familiarity], 2).probabilities, probabilities);
  assert.equal(splitOutputs([features, probabilities, familiarity], 2).features, features);
  assert.equal(splitOutputs(probabilities, 2).familiarity, null);
  features.dispose();
  const meta = parseMetadata({ ...META, unknown: { output: 'familiarity', method: 'knn-cosine', threshold: 0.5 } });
  assert.equal(isUnknown(0.2, meta), true);
  assert.equal(isUnknown(0.8, meta), false);
  assert.equal(isUnknown(null, meta), false);
  assert.equal(isUnknown(0.2, parseMetadata(META)), false); // no detector: never unknown
  tf.dispose([probabilities, familiarity]);
});

test('timeBackends times the backends that start, and the fastest wins', async () => {
  let calls = 0;
  let disposed = 0;
  const prepare = async () => {
    const weights = tf.ones([64, 64]); // each backend gets its own copy of the "model"
    return {
      infer: async () => {
        calls += 1;
        const y = tf.matMul(weights, weights);
        await y.data();
        y.dispose();
      },
      dispose: () => { disposed += 1; weights.dispose(); },
    };
  };
  const before = tf.memory().numTensors;
  const results = await timeBackends(tf, ['webgpu', 'webgl', 'wasm', 'cpu'], prepare);
  // Under Node only cpu starts (no GPU, no wasm backend registered): warm-up plus three timed runs.
  assert.deepEqual(results.map((r) => r.ms === null), [true, true, true, false]);
  assert.equal(calls, 4);
  assert.equal(disposed, 1);
  assert.equal(fastestBackend(results), 'cpu');
  assert.equal(tf.memory().numTensors, before);
  assert.equal(fastestBackend([{ name: 'webgl', ms: 324 }, { name: 'wasm', ms: 11.4 }, { name: 'cpu', ms: 202 }]), 'wasm');
  assert.equal(describeTimes([{ name: 'webgl', ms: 324 }, { name: 'wasm', ms: 11.44 }, { name: 'webgpu', ms: null }]),
    'wasm 11.4 ms · webgl 324 ms · webgpu did not start');
  assert.throws(() => fastestBackend([{ name: 'webgl', ms: null }]), /no TensorFlow.js backend could start/);
});

test('overWhite composites straight alpha over white like vision.images.load_image', async () => {
  const rgba = tf.tensor3d([[[200, 100, 0, 255], [200, 100, 0, 0], [0, 0, 0, 128]]], [1, 3, 4], 'int32');
  const rgb = overWhite(tf, rgba);
  // Opaque stays, transparent turns white, half-transparent black turns mid grey (127.0 = 255 * (1 - 128/255)).
  assert.deepEqual(Array.from(await rgb.data()), [200, 100, 0, 255, 255, 255, 127, 127, 127]);
  tf.dispose([rgba, rgb]);
});

test('sameOriginUrl keeps ?model= and ?head= on the page\'s own site', () => {
  const page = 'http://127.0.0.1:8000/web/index.html?head=x';
  assert.equal(sameOriginUrl('model', page), 'http://127.0.0.1:8000/web/model');
  assert.equal(sameOriginUrl('../mine/', page), 'http://127.0.0.1:8000/mine/');
  assert.equal(sameOriginUrl('/exports/abc', page), 'http://127.0.0.1:8000/exports/abc');
  assert.equal(sameOriginUrl('head.json', 'http://127.0.0.1:8000/mine/', page), 'http://127.0.0.1:8000/mine/head.json');
  for (const foreign of ['http://127.0.0.1:8001/web/model', '//evil.example/m', 'https://127.0.0.1:8000/m',
    'http://evil.example/m', 'data:application/json,{}', 'blob:http://evil.example/1234',
    'blob:http://127.0.0.1:8000/1234', 'javascript:alert(1)', 'http://[bad']) {
    assert.equal(sameOriginUrl(foreign, page), null, foreign);
  }
  assert.equal(sameOriginUrl('http://evil.example/h.json', 'http://127.0.0.1:8000/mine/', page), null);
  // An opaque page origin (file:) matches nothing, not even another opaque one.
  assert.equal(sameOriginUrl('data:text/plain,x', 'file:///web/index.html'), null);
});
