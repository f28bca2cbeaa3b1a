// node --test: the page's pure module, with real TF.js (cpu backend) under Node.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { FpsMeter, backendOrder, parseMetadata, pickBackend, preprocess, topK } from '../classifier.js';

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
  assert.deepEqual(backendOrder('wasm'), ['wasm', 'webgl', 'cpu']);
  assert.deepEqual(backendOrder('nonsense'), ['webgl', 'wasm', 'cpu']);
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
