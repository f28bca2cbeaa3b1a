// node --test: the trainer's pure parts (web/trainer.js): the class bank's edits and the
// "unknown" detector, against numbers from vision/trust/ood.py's fit_knn.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  FeatureBank, backgroundRows, detectorFromInfo, detectorInfo, familiarity, fitKnn, headMetadata, quantile, unitRows,
} from '../trainer.js';

const TRAIN = [[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 1, 0.2], [0, 0, 1]].map((r) => Float32Array.from(r));
const HELD = [[1, 1, 0], [0, 0.2, 1]].map((r) => Float32Array.from(r));
const BACKGROUND = [[-1, 0, 0], [0, -1, -1]].map((r) => Float32Array.from(r));

test('fitKnn places the threshold as vision/trust/ood.py fit_knn does', () => {
  // Expected: fit_knn(TRAIN, held_out, background).threshold, accept_rate, held_out_images in numpy.
  const cases = [
    [fitKnn(TRAIN), 0.35132405161857605, 0.8, 5], // no held-out images: nearest other training image
    [fitKnn(TRAIN, HELD), 0.3708866536617279, 0.8571428571428571, 7],
    [fitKnn(TRAIN, HELD, BACKGROUND), 0.18544332683086395, 1.0, 7], // halfway to the background
  ];
  for (const [detector, threshold, acceptRate, heldOut] of cases) {
    assert.ok(Math.abs(detector.threshold - threshold) < 1e-6, `${detector.threshold} vs ${threshold}`);
    assert.ok(Math.abs(detector.acceptRate - acceptRate) < 1e-12);
    assert.equal(detector.heldOut, heldOut);
    assert.equal(detector.method, 'knn-cosine');
  }
  const detector = fitKnn(TRAIN);
  assert.ok(Math.abs(familiarity(detector, Float32Array.from([2, 0, 0])) - 1) < 1e-6); // same direction as a photo
  assert.ok(familiarity(detector, Float32Array.from([-1, -1, -1])) < detector.threshold); // unlike all: unknown
});

test('quantile interpolates like numpy.quantile, and unitRows gives unit rows', () => {
  assert.ok(Math.abs(quantile([3, 1, 2, 10], 0.05) - 1.15) < 1e-12);
  assert.equal(quantile([5], 0.05), 5);
  assert.throws(() => quantile([], 0.5), /nothing/);
  const [unit] = unitRows([Float32Array.from([3, 4])]);
  assert.ok(Math.abs(unit[0] - 0.6) < 1e-7 && Math.abs(unit[1] - 0.8) < 1e-7);
});

test('the detector survives the download: metadata.json holds its threshold and references', () => {
  const detector = fitKnn(TRAIN);
  const meta = headMetadata({ featureSize: 3, name: 'm' }, ['a', 'b'], { count: 5, loss: 0.1 }, detector);
  const back = detectorFromInfo(JSON.parse(JSON.stringify(meta)).unknown, 3);
  assert.equal(back.threshold, detector.threshold);
  assert.deepEqual(back.references.map((r) => Array.from(r)), detector.references.map((r) => Array.from(r)));
  assert.equal(detectorFromInfo(detectorInfo(detector), 4), null); // another backbone's features: none
  assert.equal(detectorFromInfo(undefined, 3), null);
});

test('FeatureBank removes samples, renames and deletes classes', () => {
  const bank = new FeatureBank(2);
  const cats = bank.addClass(' cats ');
  const dogs = bank.addClass('dogs');
  bank.add(cats, [1, 0], 'thumb-a');
  bank.add(cats, [0.5, 0.5], 'thumb-b');
  bank.add(dogs, [0, 1]);
  assert.deepEqual(bank.labels, ['cats', 'dogs']);
  bank.remove(cats, 0);
  assert.deepEqual(bank.classes[0].thumbnails, ['thumb-b']);
  assert.deepEqual(Array.from(bank.classes[0].features[0]), [0.5, 0.5]);
  assert.throws(() => bank.remove(cats, 5), /no image 5/);
  bank.rename(cats, 'kittens');
  bank.rename(cats, 'kittens'); // its own name again is fine
  assert.throws(() => bank.rename(cats, 'dogs'), /already a class "dogs"/);
  assert.throws(() => bank.rename(cats, '  '), /name the class/);
  assert.deepEqual(bank.labels, ['kittens', 'dogs']);
  assert.equal(bank.problem(), null);
  bank.deleteClass(cats);
  assert.deepEqual(bank.labels, ['dogs']);
  assert.equal(bank.problem(), 'add at least two classes');
  assert.deepEqual(bank.matrix().labels, [0]);
  assert.throws(() => bank.deleteClass(3), /no class number 3/);
  assert.throws(() => bank.add(0, [1, 2, 3]), /expected 2 features/);
});

test('backgroundRows reads background.json only for the model that made it', () => {
  const rows = [Float32Array.from([1, 2]), Float32Array.from([3, 4]), Float32Array.from([5, 6])];
  const flat = new Float32Array([1, 2, 3, 4, 5, 6]);
  const features = btoa(String.fromCharCode(...new Uint8Array(flat.buffer)));
  const json = { model: 'm', size: 2, count: 3, features };
  assert.deepEqual(backgroundRows(json, 'm', 2), rows);
  assert.equal(backgroundRows(json, 'another model', 2), null);
  assert.equal(backgroundRows(json, 'm', 3), null);
  assert.equal(backgroundRows({ ...json, count: 4 }, 'm', 2), null);
  assert.equal(backgroundRows(null, 'm', 2), null);
});
