// node --test: the page's pure module, with real TF.js (cpu backend) under Node.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import {
  CLEARLY_FASTER, FpsMeter, Mutex, PER_CHANNEL, backendOrder, clearlyFaster, describeTimes, expandWeights,
  isUnknown, measureBackends, median, onBackend, overWhite, parseMetadata, pickBackend, preprocess,
  sameOriginUrl, splitOutputs, topK,
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

test('a Teachable Machine import is fed the centred square, as vision.images.preprocess does', async () => {
  await tf.setBackend('cpu');
  const meta = parseMetadata({ ...META, preprocessing: { size: [1, 1], scale: 1, offset: 0, crop: 'center' } });
  assert.equal(meta.centerCrop, true);
  assert.equal(parseMetadata(META).centerCrop, false);
  assert.throws(() => parseMetadata({ ...META, preprocessing: { size: [1, 1], crop: 'corner' } }), /crop/);
  assert.throws(() => parseMetadata({ ...META, preprocessing: { size: [1, 1], channels: 'L' } }), /L input/);
  // 2 x 4: the outer columns are 0, the centred 2 x 2 square 200; one pixel out is its mean.
  const row = [0, 0, 0, 200, 200, 200, 200, 200, 200, 0, 0, 0];
  const pixels = tf.tensor3d([...row, ...row], [2, 4, 3], 'int32');
  const out = preprocess(tf, pixels, meta);
  for (const value of await out.data()) assert.ok(Math.abs(value - 200) < 1e-4, `got ${value}`);
  out.dispose();
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

/**
 * A stand-in for TF.js's backend switching (Node has only cpu): setBackend switches at once
 * when the backend was started before, as TF.js does, and `started` lists those that start.
 */
function fakeTf(started, log) {
  const ready = new Set(['wasm']);
  const fake = {
    backend: 'wasm',
    getBackend: () => fake.backend,
    async setBackend(name) {
      if (!ready.has(name)) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        if (!started.includes(name)) return false;
        ready.add(name);
      }
      fake.backend = name;
      log.push(`on ${name}`);
      return true;
    },
  };
  return fake;
}

test('measureBackends times the others in small steps, on their own backend, and gives back the page\'s', async () => {
  const log = [];
  const fake = fakeTf(['webgl'], log);
  const speed = { wasm: 30, webgl: 10 }; // webgl three times faster: a clear winner
  let disposed = 0;
  const prepare = (name) => {
    log.push(`prepare ${name} on ${fake.getBackend()}`);
    return {
      name,
      warm: async () => log.push(`warm ${name}`),
      run: async () => {
        const until = performance.now() + speed[name];
        while (performance.now() < until) { /* a busy backend */ }
        log.push(`run ${name}`);
      },
      dispose: () => { disposed += name === 'wasm' ? 0 : 1; }, // the page's live model: the caller's no-op
    };
  };
  let idles = 0;
  const idle = async () => { idles += 1; log.push('idle'); };
  const arrived = [];
  const { results, winner, trial } = await measureBackends(fake, {
    current: 'wasm', names: ['wasm', 'webgpu', 'webgl'], prepare, lock: new Mutex(), idle, runs: 3,
    onResult: (result, all) => arrived.push([result.name, all.length]),
  });
  assert.deepEqual(results.map((r) => [r.name, r.ms === null]), [['wasm', false], ['webgpu', true], ['webgl', false]]);
  assert.ok(results[0].ms >= 25 && results[2].ms >= 8 && results[2].ms < results[0].ms);
  assert.deepEqual(arrived, [['wasm', 1], ['webgpu', 2], ['webgl', 3]]); // figures one by one, as they come
  assert.equal(winner, 'webgl');
  assert.equal(trial.name, 'webgl'); // its warm model is handed over, not disposed
  assert.equal(disposed, 0);
  assert.equal(fake.getBackend(), 'wasm'); // the page is back on its own backend
  assert.ok(log.includes('prepare webgl on webgl'), log.join(', '));
  // Never two pieces of work without a yield between them: every run and prepare follows an idle.
  log.forEach((entry, i) => {
    if (/^(run|prepare|warm)/.test(entry)) {
      const before = log.slice(0, i).reverse().find((e) => !e.startsWith('on '));
      assert.equal(before, 'idle', `${entry} came straight after ${before}`);
    }
  });
  assert.ok(idles >= 1 + 3 + 2 + 1 + 1 + 3);
});

test('measureBackends keeps the page\'s backend on a near tie and frees every trial model', async () => {
  const log = [];
  const fake = fakeTf(['webgl', 'webgpu'], log);
  let disposed = 0;
  const prepare = (name) => ({ warm: async () => {}, run: async () => {}, dispose: () => { disposed += name === 'wasm' ? 0 : 1; } });
  const { results, winner, trial } = await measureBackends(fake, {
    current: 'wasm', names: ['wasm', 'webgl', 'webgpu'], prepare, lock: new Mutex(), idle: async () => {}, margin: 1e9,
  });
  assert.equal(results.filter((r) => r.ms !== null).length, 3);
  assert.equal(winner, null);
  assert.equal(trial, null);
  assert.equal(disposed, 2);
  assert.equal(fake.getBackend(), 'wasm');
});

test('clearlyFaster switches only past the margin', () => {
  const times = (wasm, webgl) => [{ name: 'wasm', ms: wasm }, { name: 'webgl', ms: webgl }, { name: 'webgpu', ms: null }];
  assert.equal(CLEARLY_FASTER, 1.5);
  assert.equal(clearlyFaster(times(100, 60), 'wasm'), 'webgl');
  assert.equal(clearlyFaster(times(100, 70), 'wasm'), null); // 1.43x: a near tie keeps wasm
  assert.equal(clearlyFaster(times(100, 300), 'wasm'), null);
  assert.equal(clearlyFaster(times(null, 10), 'wasm'), null);
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2);
});

test('Mutex runs jobs one at a time, in order, and survives a failing one', async () => {
  const lock = new Mutex();
  const order = [];
  const slow = lock.run(async () => { order.push('a start'); await new Promise((r) => setTimeout(r, 10)); order.push('a end'); });
  const failing = lock.run(() => { order.push('b'); throw new Error('boom'); });
  const last = lock.run(() => { order.push('c'); return 7; });
  await slow;
  await assert.rejects(failing, /boom/);
  assert.equal(await last, 7);
  assert.deepEqual(order, ['a start', 'a end', 'b', 'c']);
});

test('onBackend runs on the backend asked for and always switches back', async () => {
  await tf.setBackend('cpu');
  assert.equal(onBackend(tf, 'cpu', () => tf.getBackend()), 'cpu');
  const log = [];
  const fake = fakeTf(['webgl'], log);
  await fake.setBackend('webgl');
  await fake.setBackend('wasm');
  assert.equal(onBackend(fake, 'webgl', () => fake.getBackend()), 'webgl');
  assert.throws(() => onBackend(fake, 'webgl', () => { throw new Error('lost context'); }), /lost context/);
  assert.equal(fake.getBackend(), 'wasm');
  assert.throws(() => onBackend(fake, 'webgpu', () => 1), /not ready/); // never started: no silent fallback
  assert.equal(fake.getBackend(), 'wasm');
});

test('describeTimes puts the fastest first and says what was not timed', () => {
  assert.equal(describeTimes([{ name: 'webgl', ms: 324 }, { name: 'wasm', ms: 11.44 }, { name: 'webgpu', ms: null }]),
    'wasm 11.4 ms · webgl 324 ms · webgpu did not start');
  assert.equal(describeTimes([{ name: 'cpu', ms: null, skipped: true }, { name: 'wasm', ms: 120 }]), 'wasm 120 ms · cpu not timed');
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
