#!/usr/bin/env node
'use strict';
// Ember's continuous-training workflow from Node.js, against a running daemon:
// upload SST-2 rows in chunks, Fit, follow WatchJob, Predict, check that bad requests fail
// with the right status and change nothing, continue the fit on new rows, Dump (and download it), Transfer
// the dump to STS-B, Export (and download it). The last line is `summary {json}`.
//
//   node clients/node/workflow.js --address 127.0.0.1:50151 [--out DIR] [--time-limit 30]
//
// Exits 1 with the daemon's error when a step fails or a check does not hold.

const fs = require('node:fs');
const path = require('node:path');
const { check, expectRefusal, positive, runMain, Steps } = require('./lib/steps');

const USAGE = `usage: node workflow.js --address HOST:PORT [options]
  --out DIR           where downloads go (default: a new temporary folder)
  --data DIR          the SST-2 / STS-B samples (default: examples/data of this checkout)
  --rows N            SST-2 rows of the first fit (default 400)
  --more-rows N       new SST-2 rows of the continued fit (default 400)
  --sts-rows N        STS-B rows of the transfer (default 400)
  --predict-rows N    SST-2 dev rows to predict (default 8)
  --time-limit S      seconds per fit (default 30)
  --chunk-bytes N     upload chunk size (default 1048576)
  --model NAME        the SST-2 model (default sst2-node)
  --sts-model NAME    the STS-B model (default stsb-node)`;

// ---- the samples: TSV as pandas writes it (a field holding a quote is quoted) -------------

/** Splits a TSV line into raw fields, quoted ones kept as written (so they re-read the same). */
function splitRaw(line) {
  const fields = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i <= line.length; i += 1) {
    if (i === line.length || (line[i] === '\t' && !quoted)) {
      fields.push(line.slice(start, i));
      start = i + 1;
    } else if (line[i] === '"') {
      quoted = !quoted;
    }
  }
  return fields;
}

function unquote(raw) {
  return raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1).replaceAll('""', '"') : raw;
}

/** A TSV file as {columns, rows}, rows of raw fields. */
function readTsv(file) {
  const [header, ...lines] = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
  return { columns: splitRaw(header), rows: lines.map(splitRaw) };
}

/** TSV bytes of `rows` with only `columns` (in that order). */
function tsvBytes(table, columns) {
  const idx = columns.map((c) => table.columns.indexOf(c));
  if (idx.includes(-1)) throw new Error(`columns ${columns} not all in ${table.columns}`);
  const lines = [columns.join('\t'), ...table.rows.map((r) => idx.map((i) => r[i]).join('\t'))];
  return Buffer.from(`${lines.join('\n')}\n`, 'utf8');
}

/** Rows as {column: value} objects (for inline JSON requests). */
function records(table, renames = {}) {
  return table.rows.map((r) => Object.fromEntries(table.columns.map((c, i) => [renames[c] || c, unquote(r[i])])));
}

// ---- the workflow ---------------------------------------------------------------------------


async function workflow(client, a, summary) {
  const rows = positive(a, 'rows');
  const moreRows = positive(a, 'more-rows');
  const timeLimitS = positive(a, 'time-limit');
  const chunkBytes = positive(a, 'chunk-bytes');
  const { out } = summary;
  await client.waitForReady();
  console.log(`ember at ${a.address}; downloads under ${out}`);

  const steps = new Steps(client, { out, chunkBytes });
  // 1. upload the SST-2 sample's first rows in chunks, and fit
  const sst2 = readTsv(path.join(a.data, 'sst2_train.tsv'));
  const first = { columns: sst2.columns, rows: sst2.rows.slice(0, rows) };
  summary.train = await steps.upload('sst2-train-1', tsvBytes(first, ['sentence', 'label']), first.rows.length, 'tsv');
  summary.fit = await steps.runJob('fit', await client.fit(a.model, summary.train.id, { label: 'label', evalMetric: 'acc', timeLimitS }));
  const afterFit = await client.getModel(a.model);
  console.log(`model ${a.model}: ${afterFit.problem_type}, classes ${afterFit.classes.join(' ')}, version ${afterFit.current_version}`);

  // 2. predict a few dev rows
  const dev = readTsv(path.join(a.data, 'sst2_dev.tsv'));
  const predictRows = records({ columns: dev.columns, rows: dev.rows.slice(0, positive(a, 'predict-rows')) }, { content: 'sentence' })
    .map(({ sentence }) => ({ sentence }));
  const p = await client.predict(a.model, predictRows, { withProbabilities: true });
  const nc = p.classes.length;
  const confidence = p.labels.map((label, i) => p.probabilities[i * nc + p.classes.indexOf(label)]);
  p.labels.forEach((label, i) => console.log(`  ${label} (${confidence[i].toFixed(3)})  ${predictRows[i].sentence.slice(0, 70)}`));
  console.log(`predict ${a.model} v${p.version}: ${p.labels.join(' ')}`);
  summary.predict = { version: p.version, rows: predictRows, labels: p.labels, classes: p.classes, probabilities: p.probabilities };

  // 3. bad requests: refused with the right status, and nothing changes
  summary.bad_requests = [
    await expectRefusal("Fit with label 'no_such_column'", 'INVALID_ARGUMENT', 'no_such_column',
      () => client.fit(`${a.model}-bad`, summary.train.id, { label: 'no_such_column', timeLimitS })),
    await expectRefusal(`GetModel '${a.model}-bad' after the refused Fit`, 'NOT_FOUND', `${a.model}-bad`,
      () => client.getModel(`${a.model}-bad`)),
    await expectRefusal("Predict with model 'no-such-model'", 'NOT_FOUND', 'no-such-model',
      () => client.predict('no-such-model', predictRows)),
  ];

  // 4. continue the fit on new rows: version 2
  const second = { columns: sst2.columns, rows: sst2.rows.slice(rows, rows + moreRows) };
  summary.train_more = await steps.upload('sst2-train-2', tsvBytes(second, ['sentence', 'label']), second.rows.length, 'tsv');
  summary.continued_fit = await steps.runJob('continued fit', await client.fit(a.model, summary.train_more.id, { timeLimitS }));
  const model = await client.getModel(a.model);
  const v = model.versions[model.versions.length - 1];
  console.log(`model ${a.model}: version ${v.version} (parent ${v.parent_version}), val ${v.val_score.toFixed(4)}; `
    + `version ${v.parent_version}'s validation rows re-scored ${v.forgetting_before.toFixed(4)} -> ${v.forgetting_after.toFixed(4)}`);
  check(model.current_version === 2 && v.parent_version === 1, `the continued fit should make version 2 from 1, got ${v.version} from ${v.parent_version}`);
  summary.model = { name: a.model, current_version: model.current_version, versions: model.versions.map((x) => x.version) };

  // 4b. name version 1 "production": Predict by alias, DeleteVersion refuses it, then unname it
  const named = await client.setAlias(a.model, 'production', 1);
  check(Number(named.aliases.production) === 1, `SetAlias should name version 1, got ${JSON.stringify(named.aliases)}`);
  const byAlias = await client.predict(a.model, predictRows.slice(0, 2), { alias: 'production' });
  check(Number(byAlias.version) === 1, `Predict by alias 'production' should answer from version 1, got ${byAlias.version}`);
  summary.bad_requests.push(await expectRefusal('DeleteVersion of the version an alias names', 'FAILED_PRECONDITION', 'production',
    () => client.deleteVersion(a.model, 1)));
  await client.deleteAlias(a.model, 'production');
  console.log(`alias production -> v1 served Predict by alias; DeleteVersion refused while it was named`);

  // 5. dump the backbones and download them
  const dump = await client.dump(a.model);
  summary.dump = await steps.download('dump', dump);

  // 6. transfer the dump to STS-B (regression on sentence pairs)
  const stsb = readTsv(path.join(a.data, 'stsb_train.tsv'));
  const sts = { columns: stsb.columns, rows: stsb.rows.slice(0, positive(a, 'sts-rows')) };
  summary.sts_train = await steps.upload('stsb-train', tsvBytes(sts, ['sentence1', 'sentence2', 'score']), sts.rows.length, 'tsv');
  summary.transfer = await steps.runJob('transfer', await client.transfer(a['sts-model'], dump.id, summary.sts_train.id, { label: 'score', timeLimitS }));
  const stsModel = await client.getModel(a['sts-model']);
  console.log(`model ${a['sts-model']}: ${stsModel.problem_type}, version ${stsModel.current_version}, val ${stsModel.versions[0].val_score.toFixed(4)} (${stsModel.eval_metric})`);
  summary.transfer.problem_type = stsModel.problem_type;

  // 7. export to ONNX (checked by the daemon against torch) and download the bundle
  summary.export = await steps.download('export', await client.export(a.model));
}

runMain('workflow', {
  usage: USAGE,
  required: ['address'],
  options: {
    data: { type: 'string', default: path.resolve(__dirname, '..', '..', 'examples', 'data') },
    rows: { type: 'string', default: '400' },
    'more-rows': { type: 'string', default: '400' },
    'sts-rows': { type: 'string', default: '400' },
    'predict-rows': { type: 'string', default: '8' },
    'time-limit': { type: 'string', default: '30' },
    'chunk-bytes': { type: 'string', default: String(1 << 20) },
    model: { type: 'string', default: 'sst2-node' },
    'sts-model': { type: 'string', default: 'stsb-node' },
  },
}, workflow);
