'use strict';
// The pieces the Node workflows share: printing a job's events, checks that stop a workflow
// with a clear message, and the upload / job / download steps, each printing what it did.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { Client, EmberRpcError } = require('./client');

/** Prints one WatchJob event as a line tagged with the job's id. */
function printEvent(event) {
  const tag = `  [${event.job_id.slice(0, 8)}]`;
  switch (event.kind) {
    case 'JOB_EVENT_KIND_STATE': // a job state, or the trainer's own note (state unset)
      if (event.state === 'JOB_STATE_UNSPECIFIED') console.log(`${tag} note ${event.message}`);
      else console.log(`${tag} ${event.state.replace('JOB_STATE_', '')}${event.message ? `: ${event.message}` : ''}`);
      break;
    case 'JOB_EVENT_KIND_PROGRESS': {
      const eta = event.eta_s >= 0 ? ` eta ${event.eta_s.toFixed(0)}s` : '';
      console.log(`${tag} epoch ${event.epoch} step ${event.step} loss ${event.loss.toFixed(4)} ${event.samples_per_s.toFixed(1)} samples/s elapsed ${event.elapsed_s.toFixed(0)}s${eta}`);
      break;
    }
    case 'JOB_EVENT_KIND_VALIDATION':
      console.log(`${tag} validation at step ${event.step}: ${event.val_score.toFixed(4)}`);
      break;
    case 'JOB_EVENT_KIND_CHECKPOINT':
      console.log(`${tag} checkpoint at step ${event.step}`);
      break;
    default:
      console.log(`${tag} ${event.kind}`);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Runs `call`, which must fail with status `codeName` and a message containing `mentions`. */
async function expectRefusal(what, codeName, mentions, call) {
  try {
    await call();
  } catch (err) {
    if (!(err instanceof EmberRpcError)) throw err;
    check(err.codeName === codeName, `${what}: expected ${codeName}, got ${err.codeName}: ${err.details}`);
    check(err.details.includes(mentions), `${what}: the message should name ${JSON.stringify(mentions)}: ${err.details}`);
    console.log(`bad request: ${what} -> ${err.codeName}: ${err.details} (as expected)`);
    return { what, code: err.codeName, message: err.details };
  }
  throw new Error(`check failed: ${what} succeeded; expected ${codeName}`);
}

/** The option `name` of parsed arguments `a` as a positive number (else an error naming it). */
function positive(a, name) {
  const value = Number(a[name]);
  if (!(value > 0)) throw new Error(`--${name} ${a[name]}: give a positive number`);
  return value;
}

/** Upload, job and download steps against one client; downloads go under `out`. */
class Steps {
  constructor(client, { out, chunkBytes }) {
    this.client = client;
    this.out = out;
    this.chunkBytes = chunkBytes;
  }

  /** Uploads a table's bytes; checks the daemon read `nRows` rows. */
  async upload(name, bytes, nRows, format) {
    const r = await this.client.upload(bytes, { name, format, chunkBytes: this.chunkBytes });
    const how = r.deduplicated ? 'already held' : `${r.chunks} chunks`;
    console.log(`upload ${name}: ${nRows} rows, ${bytes.length} bytes (${how}) -> dataset ${r.dataset.id} (${r.dataset.num_rows} rows)`);
    check(r.dataset.num_rows === nRows, `${name}: the daemon read ${r.dataset.num_rows} rows, ${nRows} were sent`);
    return { id: r.dataset.id, rows: r.dataset.num_rows, bytes: bytes.length, chunks: r.chunks, format: r.dataset.format };
  }

  /** Follows an accepted job to its end; `allowed` lists the end states that are not an error. */
  async runJob(what, job, allowed = ['JOB_STATE_SUCCEEDED']) {
    console.log(`${what} ${job.model_name}: job ${job.id} ${job.state.replace('JOB_STATE_', '')}`);
    const end = await this.client.follow(job.id, printEvent);
    if (!allowed.includes(end.state)) throw new Error(`${what} ${job.model_name}: job ${job.id} ended ${end.state}: ${end.error}`);
    console.log(`${what} ${job.model_name}: ${end.state.replace('JOB_STATE_', '')}${end.version ? ` -> version ${end.version}` : ''}`);
    return { id: end.id, state: end.state, version: end.version };
  }

  /** Downloads an artifact under out/`what`, checking its file list. */
  async download(what, artifact) {
    console.log(`${what} ${artifact.model_name} v${artifact.version}: artifact ${artifact.id}, ${artifact.files.length} files, ${artifact.size_bytes} bytes`);
    const dest = path.join(this.out, what);
    const files = await this.client.download(artifact.id, dest);
    const got = files.map((f) => f.path).sort();
    check(JSON.stringify(got) === JSON.stringify([...artifact.files].sort()), `${what}: downloaded ${got}, the artifact lists ${artifact.files}`);
    console.log(`download ${what}: ${got.join(', ')} (sha256 checked) -> ${dest}`);
    return { id: artifact.id, version: artifact.version, files };
  }
}

/**
 * A workflow script's main: parses `options` (plus --address, --out, --help), prints `usage`
 * on --help or when a `required` option is missing (exit 2), runs `workflow(client, args,
 * summary)` against the daemon with downloads under --out (default: a new temporary folder),
 * prints `summary {json}` as the last line, and exits 1 with the error when a step fails.
 */
function runMain(name, { usage, options, required = ['address'] }, workflow) {
  const main = async () => {
    const { values: a } = parseArgs({
      options: { ...options, address: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', default: false } },
    });
    if (a.help || required.some((k) => !a[k])) {
      console.log(usage);
      return a.help ? 0 : 2;
    }
    const out = a.out || fs.mkdtempSync(path.join(os.tmpdir(), `ember-${name}-`));
    const summary = { address: a.address, out };
    const client = new Client(a.address);
    try {
      await workflow(client, a, summary);
    } finally {
      client.close();
    }
    console.log(`summary ${JSON.stringify(summary)}`);
    return 0;
  };
  main().then((code) => { process.exitCode = code; }, (err) => {
    console.error(`${name} failed: ${err.message}`);
    process.exitCode = 1;
  });
}

module.exports = { printEvent, check, expectRefusal, positive, runMain, Steps };
