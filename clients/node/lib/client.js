'use strict';
// Ember's Node.js client. The API (package ember.v1) is loaded at runtime from the .proto
// files in the repository's protos/ (the source of truth), so this client never drifts from
// it. Field names are kept as the protos spell them (keepCase: model_name, after_seq, ...),
// enums come back as their names ('JOB_STATE_SUCCEEDED'), int64 values as Numbers.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTOS = process.env.EMBER_PROTOS || path.resolve(__dirname, '..', '..', '..', 'protos');
const CHUNK_BYTES = 1 << 20; // the protos' bound on an upload chunk
const FINAL_STATES = new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED', 'JOB_STATE_INTERRUPTED']);

/** The ember.v1 package, loaded from every .proto file under `protosDir`/ember/v1. */
function loadApi(protosDir = PROTOS) {
  const dir = path.join(protosDir, 'ember', 'v1');
  if (!fs.existsSync(dir)) {
    throw new Error(`no protos at ${dir}: run from an Ember checkout or set EMBER_PROTOS to its protos/ folder`);
  }
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.proto')).sort().map((f) => `ember/v1/${f}`);
  const definition = protoLoader.loadSync(files, {
    includeDirs: [protosDir], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).ember.v1;
}

/** The name of a numeric gRPC status code ('INVALID_ARGUMENT'). */
function statusName(code) {
  return Object.keys(grpc.status).find((name) => grpc.status[name] === code) || `CODE_${code}`;
}

// google.rpc.Status and the detail messages Ember sends (AIP-193), decoded with protobufjs
// (the library @grpc/proto-loader itself uses) from the `grpc-status-details-bin` trailer.
const protobuf = require(require.resolve('protobufjs', { paths: [require.resolve('@grpc/proto-loader')] }));
const str = (id) => ({ type: 'string', id });
const RPC = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: { type_url: str(1), value: { type: 'bytes', id: 2 } } } } },
        rpc: {
          nested: {
            Status: { fields: { code: { type: 'int32', id: 1 }, message: str(2), details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 } } },
            ErrorInfo: { fields: { reason: str(1), domain: str(2), metadata: { keyType: 'string', type: 'string', id: 3 } } },
            BadRequest: {
              fields: { field_violations: { rule: 'repeated', type: 'FieldViolation', id: 1 } },
              nested: { FieldViolation: { fields: { field: str(1), description: str(2) } } },
            },
            PreconditionFailure: {
              fields: { violations: { rule: 'repeated', type: 'Violation', id: 1 } },
              nested: { Violation: { fields: { type: str(1), subject: str(2), description: str(3) } } },
            },
            ResourceInfo: { fields: { resource_type: str(1), resource_name: str(2), owner: str(3), description: str(4) } },
          },
        },
      },
    },
  },
});

/** The google.rpc detail messages in a failed call's trailers, as plain objects with a `type`. */
function statusDetails(metadata) {
  const raw = metadata && typeof metadata.get === 'function' ? metadata.get('grpc-status-details-bin') : [];
  if (!raw || !raw.length) return [];
  try {
    const status = RPC.lookupType('google.rpc.Status').decode(raw[0]);
    return status.details.map((any) => {
      const type = any.type_url.split('/').pop();
      let found = null;
      try { found = RPC.lookupType(type); } catch { return { type }; }
      return { type, ...found.toObject(found.decode(any.value), { defaults: true }) };
    });
  } catch {
    return [];
  }
}

/**
 * A call the daemon refused or that failed: `code` is the gRPC status, `codeName` its name,
 * `details` the message. From the daemon's google.rpc details, where it sent them: `reason`
 * and `domain` (ErrorInfo), `field_violations` ([{field, description}], BadRequest),
 * `precondition_violations` ([{type, subject, description}]), `resource`
 * ({resource_type, resource_name}, ResourceInfo), `request_id`; all of them in `statusDetails`.
 */
class EmberRpcError extends Error {
  constructor(code, details, statusDetailList = []) {
    super(`${statusName(code)}: ${details}`);
    this.name = 'EmberRpcError';
    this.code = code;
    this.codeName = statusName(code);
    this.details = details;
    this.statusDetails = statusDetailList;
    this.reason = null;
    this.domain = null;
    this.request_id = null;
    this.field_violations = [];
    this.precondition_violations = [];
    this.resource = null;
    for (const d of statusDetailList) {
      if (d.type === 'google.rpc.ErrorInfo') {
        this.reason = d.reason;
        this.domain = d.domain;
        this.request_id = (d.metadata || {}).request_id || null;
      } else if (d.type === 'google.rpc.BadRequest') {
        this.field_violations.push(...d.field_violations.map(({ field, description }) => ({ field, description })));
      } else if (d.type === 'google.rpc.PreconditionFailure') {
        this.precondition_violations.push(...d.violations.map(({ type, subject, description }) => ({ type, subject, description })));
      } else if (d.type === 'google.rpc.ResourceInfo') {
        this.resource = { resource_type: d.resource_type, resource_name: d.resource_name };
      }
    }
  }
}

function rpcError(err) {
  return err instanceof EmberRpcError || err.code === undefined
    ? err
    : new EmberRpcError(err.code, err.details || err.message, statusDetails(err.metadata));
}

// Milliseconds a call may take (DEADLINE_EXCEEDED after); null: none (a stream as long as its
// job). Overridable per client: new Client(address, {timeouts: {Predict: 5000}}).
const DEFAULT_TIMEOUT_MS = 60000;
const DEFAULT_TIMEOUTS_MS = {
  GetModel: 15000, ListModels: 15000, GetServerStats: 15000, DeleteVersion: 60000, SetAlias: 15000, DeleteAlias: 15000, GetJob: 15000, ListJobs: 15000, GetDataset: 15000, ListDatasets: 15000,
  WatchJob: null, UploadDataset: 1800000, Fit: 600000, Resume: 600000, Transfer: 600000, Predict: 300000, Evaluate: 600000,
  Embed: 300000, Dump: 1800000, Export: 3600000, DownloadArtifact: 3600000,
};
// Calls safe to repeat: retried by grpc-js on UNAVAILABLE with backoff (the channel's service config).
const RETRIED = {
  'ember.v1.ModelService': ['GetModel', 'ListModels', 'GetServerStats', 'Predict', 'Evaluate', 'Embed', 'SetAlias'],
  'ember.v1.JobService': ['GetJob', 'ListJobs', 'WatchJob', 'CancelJob'],
  'ember.v1.DatasetService': ['GetDataset', 'ListDatasets'],
  'ember.v1.ArtifactService': ['DownloadArtifact'],
};
const SERVICE_CONFIG = JSON.stringify({
  methodConfig: [{
    name: Object.entries(RETRIED).flatMap(([service, methods]) => methods.map((method) => ({ service, method }))),
    retryPolicy: { maxAttempts: 5, initialBackoff: '0.2s', maxBackoff: '5s', backoffMultiplier: 2.5, retryableStatusCodes: ['UNAVAILABLE'] },
  }],
});

/** TableData for rows given as an uploaded dataset's id or an array of {column: value}. */
function tableData(rows) {
  if (typeof rows === 'string') return { dataset_id: rows };
  if (!Array.isArray(rows)) throw new TypeError('rows: give an uploaded dataset id or an array of {column: value} objects');
  return { json_records: JSON.stringify(rows) };
}

function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

/** One connection to an Ember daemon, with its RPCs as promise-returning methods. */
class Client {
  /**
   * @param {string} address host:port of emberd
   * @param {{token?: string, protosDir?: string, timeouts?: Object<string, number|null>}} options token: sent as
   *   `authorization: Bearer <token>`; timeouts: milliseconds per method name, over DEFAULT_TIMEOUTS_MS
   */
  constructor(address, { token = process.env.EMBER_TOKEN, protosDir, timeouts = {} } = {}) {
    const api = loadApi(protosDir);
    const options = {
      'grpc.max_receive_message_length': 64 << 20,
      'grpc.max_send_message_length': 64 << 20,
      'grpc.service_config': SERVICE_CONFIG,
      'grpc.keepalive_time_ms': 30000, // ping, so that a dead daemon is noticed
      'grpc.keepalive_timeout_ms': 10000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5000,
    };
    this.timeouts = { ...DEFAULT_TIMEOUTS_MS, ...timeouts };
    const credentials = grpc.credentials.createInsecure();
    this.address = address;
    this.token = token;
    this.channel = new grpc.Channel(address, credentials, options); // one connection for the four services
    const shared = { channelOverride: this.channel };
    this.models = new api.ModelService(address, credentials, shared);
    this.jobs = new api.JobService(address, credentials, shared);
    this.datasets = new api.DatasetService(address, credentials, shared);
    this.artifacts = new api.ArtifactService(address, credentials, shared);
  }

  close() {
    this.channel.close();
  }

  metadata() {
    const md = new grpc.Metadata();
    if (this.token) md.set('authorization', `Bearer ${this.token}`);
    return md;
  }

  /** Call options with the method's deadline (none where its timeout is null). */
  callOptions(method) {
    const ms = method in this.timeouts ? this.timeouts[method] : DEFAULT_TIMEOUT_MS;
    return ms === null || ms === undefined ? {} : { deadline: Date.now() + ms };
  }

  unary(stub, method, request) {
    return new Promise((resolve, reject) => {
      stub[method](request, this.metadata(), this.callOptions(method), (err, response) => (err ? reject(rpcError(err)) : resolve(response)));
    });
  }

  /** Resolves once the channel is connected (rejects after `timeoutMs`). */
  waitForReady(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      this.models.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(new Error(`no daemon at ${this.address}: ${err.message}`)) : resolve()));
    });
  }

  // ---- datasets ---------------------------------------------------------------------------

  /**
   * Uploads a table's bytes (format 'parquet', 'csv', 'tsv' or 'jsonl') unless the daemon already holds
   * them: a header with their sha256, then chunks of at most `chunkBytes`.
   * @returns {Promise<{dataset: object, deduplicated: boolean, chunks: number}>}
   */
  async upload(bytes, { name = 'table', format = 'tsv', chunkBytes = CHUNK_BYTES } = {}) {
    const digest = sha256(bytes);
    try {
      const { dataset } = await this.unary(this.datasets, 'GetDataset', { id: digest });
      return { dataset, deduplicated: true, chunks: 0 };
    } catch (err) {
      if (err.code !== grpc.status.NOT_FOUND) throw err;
    }
    const chunks = Math.ceil(bytes.length / chunkBytes);
    const response = await new Promise((resolve, reject) => {
      const call = this.datasets.UploadDataset(this.metadata(), this.callOptions('UploadDataset'), (err, res) => (err ? reject(rpcError(err)) : resolve(res)));
      call.write({ header: { display_name: name, format, sha256: digest, size_bytes: bytes.length } });
      // The bytes are in memory already: grpc-js buffers the writes and sends them in order.
      for (let offset = 0; offset < bytes.length; offset += chunkBytes) {
        call.write({ chunk: bytes.subarray(offset, offset + chunkBytes) });
      }
      call.end();
    });
    return { dataset: response.dataset, deduplicated: response.deduplicated, chunks };
  }

  // ---- models -----------------------------------------------------------------------------

  /** FitOptions; hyperparameter values are sent as JSON, as the protos ask. */
  static options({ label = '', problemType = '', evalMetric = '', timeLimitS = 0, hyperparameters = {}, seed = 0, columnTypes = {} } = {}) {
    const hp = Object.fromEntries(Object.entries(hyperparameters).map(([k, v]) => [k, JSON.stringify(v)]));
    return { label, problem_type: problemType, eval_metric: evalMetric, time_limit_s: timeLimitS, hyperparameters: hp, seed, column_types: columnTypes };
  }

  /** Starts a fit of `modelName` (new, or continued on new rows) on an uploaded dataset; its Job. */
  async fit(modelName, datasetId, options = {}) {
    const request = { model_name: modelName, train_data: { dataset_id: datasetId }, options: Client.options(options) };
    return (await this.unary(this.models, 'Fit', request)).job;
  }

  /** Starts a new model for a new task from a dump artifact's backbones; its Job. */
  async transfer(modelName, dumpArtifactId, datasetId, options = {}) {
    const request = {
      model_name: modelName, train_data: { dataset_id: datasetId }, options: Client.options(options), dump_artifact_id: dumpArtifactId,
    };
    return (await this.unary(this.models, 'Transfer', request)).job;
  }

  /** Starts the rest of `modelName`'s interrupted fit from its last checkpoint; its Job. */
  async resume(modelName) {
    return (await this.unary(this.models, 'Resume', { model_name: modelName })).job;
  }

  /**
   * Predicts rows: an array of {column: value} objects (sent inline as JSON; images as
   * base64 data URIs) or an uploaded dataset's id. Detection models answer in `detections`.
   */
  predict(modelName, rows, { version = 0, alias = '', withProbabilities = false } = {}) {
    const request = { model_name: modelName, version, alias, data: tableData(rows), with_probabilities: withProbabilities };
    return this.unary(this.models, 'Predict', request);
  }

  /** Scores labelled rows (as for predict); resolves to {metric: score} and the version. */
  async evaluate(modelName, rows, { version = 0, alias = '', metrics = [] } = {}) {
    const r = await this.unary(this.models, 'Evaluate', { model_name: modelName, version, alias, data: tableData(rows), metrics });
    return { scores: r.scores, version: r.version };
  }

  /** `version` (0: current) or { alias } (SetAlias; 'latest': current) picks the version. */
  async dump(modelName, version = 0, { alias = '' } = {}) {
    return (await this.unary(this.models, 'Dump', { model_name: modelName, version, alias })).artifact;
  }

  async export(modelName, version = 0, { alias = '' } = {}) {
    return (await this.unary(this.models, 'Export', { model_name: modelName, version, alias })).artifact;
  }

  /** Deletes one version; FAILED_PRECONDITION for the current one and one an alias names. */
  async deleteVersion(modelName, version) {
    await this.unary(this.models, 'DeleteVersion', { model_name: modelName, version });
  }

  /** Points `alias` at `version` (a rollback is moving it back); resolves to the model. */
  async setAlias(modelName, alias, version) {
    return (await this.unary(this.models, 'SetAlias', { model_name: modelName, alias, version })).model;
  }

  async deleteAlias(modelName, alias) {
    return (await this.unary(this.models, 'DeleteAlias', { model_name: modelName, alias })).model;
  }

  async getModel(name) {
    return (await this.unary(this.models, 'GetModel', { name })).model;
  }

  // ---- jobs -------------------------------------------------------------------------------

  async getJob(id) {
    return (await this.unary(this.jobs, 'GetJob', { id })).job;
  }

  /** WatchJob's events from after `afterSeq`: an async iterable of {event, job}. */
  async* watch(id, afterSeq = 0) {
    const call = this.jobs.WatchJob({ id, after_seq: afterSeq }, this.metadata(), this.callOptions('WatchJob'));
    try {
      for await (const response of call) yield response;
    } catch (err) {
      throw rpcError(err);
    } finally {
      call.cancel();
    }
  }

  /**
   * Follows a job to its end, calling `onEvent(event, job)` for each event; a dropped stream
   * (UNAVAILABLE) is picked up where it stopped. Resolves to the job as it ended.
   */
  async follow(jobId, onEvent = () => {}) {
    let seq = 0;
    for (;;) {
      try {
        for await (const { event, job } of this.watch(jobId, seq)) {
          seq = event.seq;
          onEvent(event, job);
        }
        const job = await this.getJob(jobId);
        if (FINAL_STATES.has(job.state)) return job;
      } catch (err) {
        if (err.code !== grpc.status.UNAVAILABLE) throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  // ---- artifacts --------------------------------------------------------------------------

  /**
   * Downloads an artifact's files under `dest`. Each file is written to a temporary name,
   * checked against the sha256 its last chunk carries, then renamed into place.
   * @returns {Promise<Array<{path: string, bytes: number, sha256: string}>>}
   */
  async download(artifactId, dest) {
    const root = path.resolve(dest);
    const written = [];
    let file = null; // {target, tmp, fd, hash, bytes}
    const call = this.artifacts.DownloadArtifact({ id: artifactId }, this.metadata(), this.callOptions('DownloadArtifact'));
    try {
      for await (const chunk of call) {
        if (file === null) {
          const target = path.resolve(root, chunk.path);
          if (!target.startsWith(root + path.sep)) {
            throw new EmberRpcError(grpc.status.DATA_LOSS, `artifact path ${JSON.stringify(chunk.path)} escapes ${root}`);
          }
          fs.mkdirSync(path.dirname(target), { recursive: true });
          const tmp = path.join(path.dirname(target), `.${path.basename(target)}.part`);
          file = { target, tmp, fd: fs.openSync(tmp, 'w'), hash: crypto.createHash('sha256'), bytes: 0 };
        }
        if (chunk.offset !== file.bytes) {
          throw new EmberRpcError(grpc.status.DATA_LOSS, `${chunk.path}: chunk at offset ${chunk.offset}, expected ${file.bytes}; download again`);
        }
        fs.writeSync(file.fd, chunk.data);
        file.hash.update(chunk.data);
        file.bytes += chunk.data.length;
        if (chunk.last) {
          const done = file;
          file = null;
          fs.fsyncSync(done.fd);
          fs.closeSync(done.fd);
          const digest = done.hash.digest('hex');
          if (digest !== chunk.sha256) {
            fs.unlinkSync(done.tmp);
            throw new EmberRpcError(grpc.status.DATA_LOSS, `${chunk.path}: sha256 ${digest} does not match the daemon's ${chunk.sha256}; download again`);
          }
          fs.renameSync(done.tmp, done.target);
          written.push({ path: chunk.path, bytes: done.bytes, sha256: digest });
        }
      }
    } catch (err) {
      if (file !== null) {
        fs.closeSync(file.fd);
        fs.rmSync(file.tmp, { force: true });
      }
      throw rpcError(err);
    }
    return written;
  }
}

module.exports = { Client, EmberRpcError, loadApi, sha256, statusName, statusDetails, FINAL_STATES, DEFAULT_TIMEOUTS_MS };
