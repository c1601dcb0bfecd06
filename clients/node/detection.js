#!/usr/bin/env node
'use strict';
// Object detection from Node.js, against a running daemon (with the detection extra): read
// COCO-style annotations, upload them as JSON Lines (images inline as base64 data URIs,
// boxes as [x1, y1, x2, y2] lists), Fit a detector, Predict boxes, Evaluate COCO mAP, check
// that a new class is refused and changes nothing, continue the fit, Dump and Export (and
// download both), Transfer the dumped detector to a new class set and, with --victim, Resume
// a fit that a daemon restart interrupted. The last line is `summary {json}`.
//
//   node clients/node/detection.js --address 127.0.0.1:50151 --data DIR [--out DIR]
//
// DIR holds one COCO folder per step (annotations.json, image paths relative to it):
// train/, more/ (the continued fit), test/, transfer-train/ and transfer-test/ (the new
// class set). Exits 1 with the daemon's error when a step fails or a check does not hold.

const fs = require('node:fs');
const path = require('node:path');
const { check, expectRefusal, positive, runMain, Steps } = require('./lib/steps');

const USAGE = `usage: node detection.js --address HOST:PORT --data DIR [options]
  --data DIR          COCO folders train/, more/, test/, transfer-train/, transfer-test/
  --out DIR           where downloads go (default: a new temporary folder)
  --time-limit S      seconds of the first fit (default 40); later fits take half
  --predict-rows N    test images to predict inline (default 4)
  --chunk-bytes N     upload chunk size (default 1048576)
  --model NAME        the detector (default shapes-node)
  --transfer-model NAME  the detector for the new class set (default shapes2-node)
  --victim NAME       also fit NAME with a checkpoint every 2 s, printing
                      "checkpoint NAME job ID" at the first; if a daemon restart
                      interrupts that fit, Resume it and follow it to its end
  --hp KEY=JSON       a hyperparameter for every fit (repeatable), e.g. env.num_threads=1`;

const SETS = ['train', 'more', 'test', 'transfer-train', 'transfer-test'];
const MEDIA_TYPES = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.bmp': 'image/bmp', '.webp': 'image/webp' };

/** COCO annotations as Ember's detection rows: {image: data URI, boxes: [[x1, y1, x2, y2]], label: [names]}. */
function readCoco(folder) {
  const file = path.join(folder, 'annotations.json');
  if (!fs.existsSync(file)) throw new Error(`no ${file}: --data needs one COCO folder per step (${SETS.join(', ')}), each with annotations.json`);
  const coco = JSON.parse(fs.readFileSync(file, 'utf8'));
  const names = new Map(coco.categories.map((c) => [c.id, c.name]));
  const rows = new Map(coco.images.map((im) => {
    const mediaType = MEDIA_TYPES[path.extname(im.file_name).toLowerCase()];
    if (!mediaType) throw new Error(`${file}: ${im.file_name} is not one of ${Object.keys(MEDIA_TYPES).join(' ')}`);
    const bytes = fs.readFileSync(path.join(folder, im.file_name));
    return [im.id, { image: `data:${mediaType};base64,${bytes.toString('base64')}`, boxes: [], label: [] }];
  }));
  for (const a of coco.annotations) {
    if (a.iscrowd) continue;
    const [x, y, w, h] = a.bbox;
    const row = rows.get(a.image_id);
    row.boxes.push([x, y, x + w, y + h]);
    row.label.push(names.get(a.category_id));
  }
  return [...rows.values()];
}

function jsonl(rows) {
  return Buffer.from(rows.map((r) => `${JSON.stringify(r)}\n`).join(''), 'utf8');
}

function hyperparameters(pairs) {
  return Object.fromEntries(pairs.map((kv) => {
    const eq = kv.indexOf('=');
    if (eq < 1) throw new Error(`--hp ${kv}: give KEY=JSON, e.g. env.num_threads=1`);
    return [kv.slice(0, eq), JSON.parse(kv.slice(eq + 1))];
  }));
}


function printDetections(rows, detections) {
  detections.forEach((d, i) => {
    const boxes = d.boxes.map((b) => `${b.label} ${b.score.toFixed(2)} [${[b.x1, b.y1, b.x2, b.y2].map((v) => v.toFixed(0)).join(' ')}]`);
    console.log(`  image ${i}: ${boxes.length} objects (${rows[i].label.length} drawn): ${boxes.slice(0, 3).join(', ')}${boxes.length > 3 ? ', ...' : ''}`);
  });
}

async function workflow(client, a, summary) {
  const timeLimitS = positive(a, 'time-limit');
  const hp = hyperparameters(a.hp);
  const steps = new Steps(client, { out: summary.out, chunkBytes: positive(a, 'chunk-bytes') });
  const data = Object.fromEntries(SETS.map((s) => [s, readCoco(path.join(a.data, s))]));
  const upload = (name, rows) => steps.upload(name, jsonl(rows), rows.length, 'jsonl');
  const scoreLine = (name, r) => `evaluate ${name} v${r.version}: ${Object.entries(r.scores).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`;
  await client.waitForReady();
  console.log(`ember at ${a.address}; downloads under ${summary.out}`);

  // 1. upload the training images with their boxes, and fit a detector
  summary.train = await upload('shapes-train', data.train);
  summary.fit = await steps.runJob('fit', await client.fit(a.model, summary.train.id, { label: 'label', timeLimitS, hyperparameters: hp }));
  const model = await client.getModel(a.model);
  console.log(`model ${a.model}: ${model.problem_type}, classes ${model.classes.join(' ')}, version ${model.current_version}`);
  check(model.problem_type === 'object_detection', `${a.model} should be an object detector, is ${model.problem_type}`);

  // 2. predict a few test images sent inline, and evaluate on the uploaded test set
  const predictRows = data.test.slice(0, positive(a, 'predict-rows'));
  const p = await client.predict(a.model, predictRows.map(({ image }) => ({ image })));
  printDetections(predictRows, p.detections);
  check(p.detections.length === predictRows.length, `${p.detections.length} detections for ${predictRows.length} images`);
  summary.predict = { version: p.version, rows: predictRows.length, detections: p.detections };
  summary.test = await upload('shapes-test', data.test);
  const scores = await client.evaluate(a.model, summary.test.id, { metrics: ['map', 'map_50'] });
  console.log(scoreLine(a.model, scores));
  summary.evaluate = scores;

  // 3. a continued fit on a class the detector does not know is refused and changes nothing
  const star = data.more.slice(0, 4).map((r, i) => (i === 0 ? { ...r, label: r.label.map(() => 'star') } : r));
  const starSet = await upload('shapes-star', star);
  summary.bad_requests = [await expectRefusal(`continued Fit of ${a.model} with a new class 'star'`, 'FAILED_PRECONDITION', 'star',
    () => client.fit(a.model, starSet.id, { hyperparameters: hp }))];
  check((await client.getModel(a.model)).current_version === 1, `the refused fit changed ${a.model}`);

  // 4. continue the fit on new images: version 2
  summary.more = await upload('shapes-more', data.more);
  summary.continued_fit = await steps.runJob('continued fit', await client.fit(a.model, summary.more.id, { timeLimitS: timeLimitS / 2, hyperparameters: hp }));
  const v = (await client.getModel(a.model)).versions.at(-1);
  console.log(`model ${a.model}: version ${v.version} (parent ${v.parent_version}), val ${v.val_score.toFixed(4)}`);
  check(v.version === 2 && v.parent_version === 1, `the continued fit should make version 2 from 1, got ${v.version} from ${v.parent_version}`);

  // 5. dump (mmdet_image/: config, safetensors weights, class names) and export (ONNX up to the raw head outputs)
  const dump = await client.dump(a.model);
  summary.dump = await steps.download('dump', dump);
  summary.export = await steps.download('export', await client.export(a.model));

  // 6. transfer the dumped detector to a new class set
  summary.transfer_train = await upload('shapes-transfer-train', data['transfer-train']);
  summary.transfer = await steps.runJob('transfer', await client.transfer(a['transfer-model'], dump.id, summary.transfer_train.id,
    { label: 'label', timeLimitS: timeLimitS / 2, hyperparameters: hp }));
  summary.transfer_test = await upload('shapes-transfer-test', data['transfer-test']);
  summary.transfer.evaluate = await client.evaluate(a['transfer-model'], summary.transfer_test.id);
  console.log(scoreLine(a['transfer-model'], summary.transfer.evaluate));

  // 7. optionally: a fit that a daemon restart interrupts, resumed from its last checkpoint
  if (a.victim) summary.victim = await victim(client, steps, a.victim, summary.train.id, { timeLimitS, hp });
}

/** Fits `name`, announcing its first checkpoint; resumes the fit if a daemon restart interrupted it. */
async function victim(client, steps, name, datasetId, { timeLimitS, hp }) {
  const job = await client.fit(name, datasetId, { label: 'label', timeLimitS, hyperparameters: { ...hp, 'optim.checkpoint_interval_s': 2 } });
  let announced = false;
  const end = await client.follow(job.id, (event) => {
    if (event.kind === 'JOB_EVENT_KIND_CHECKPOINT' && !announced) {
      announced = true;
      console.log(`checkpoint ${name} job ${job.id} at step ${event.step}`);
    }
  });
  console.log(`fit ${name}: job ${job.id} ${end.state.replace('JOB_STATE_', '')}`);
  const result = { fit: { id: job.id, state: end.state } };
  if (end.state === 'JOB_STATE_INTERRUPTED') {
    result.resume = await steps.runJob('resume', await client.resume(name));
  } else {
    check(end.state === 'JOB_STATE_SUCCEEDED', `fit ${name} ended ${end.state}: ${end.error}`);
  }
  return result;
}

runMain('detection-workflow', {
  usage: USAGE,
  required: ['address', 'data'],
  options: {
    data: { type: 'string' },
    'time-limit': { type: 'string', default: '40' },
    'predict-rows': { type: 'string', default: '4' },
    'chunk-bytes': { type: 'string', default: String(1 << 20) },
    model: { type: 'string', default: 'shapes-node' },
    'transfer-model': { type: 'string', default: 'shapes2-node' },
    victim: { type: 'string' },
    hp: { type: 'string', multiple: true, default: [] },
  },
}, workflow);
