"""Ember from other languages, without training: a generic client with no .proto files (as
grpcurl) finds the whole API by reflection and calls it; the Node client's download checks
each file's sha256 and path against a damaged artifact service (the Node workflows:
tests/e2e/test_polyglot.py)."""

from __future__ import annotations

import hashlib
from concurrent import futures

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from ember.v1 import artifact_service_pb2, artifact_service_pb2_grpc, job_service_pb2, model_service_pb2
from ember.v1 import dataset_service_pb2 as ds_pb

from ..daemon_helpers import node


@pytest.fixture(scope="module")
def daemon(shared_daemon):
    return f"127.0.0.1:{shared_daemon.port}", shared_daemon.app.settings.root_path


def test_reflection_gives_generic_clients_the_whole_api(daemon):
    address, _ = daemon
    with grpc.insecure_channel(address) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        for module in (model_service_pb2, job_service_pb2, ds_pb, artifact_service_pb2):
            for name, ours in module.DESCRIPTOR.services_by_name.items():
                theirs = pool.FindServiceByName(f"ember.v1.{name}")
                assert {(m.name, m.input_type.full_name, m.output_type.full_name) for m in theirs.methods} == \
                       {(m.name, m.input_type.full_name, m.output_type.full_name) for m in ours.methods}

        def call(method: str, **fields):  # what grpcurl does: messages built from the reflected descriptors
            m = pool.FindMethodByName(f"ember.v1.ModelService.{method}")
            request, response = (message_factory.GetMessageClass(t) for t in (m.input_type, m.output_type))
            rpc = channel.unary_unary(f"/ember.v1.ModelService/{method}", request_serializer=lambda r: r.SerializeToString(),
                                      response_deserializer=response.FromString)
            return rpc(request(**fields), timeout=10)

        assert type(call("GetServerStats")).DESCRIPTOR.full_name == "ember.v1.GetServerStatsResponse"
        with pytest.raises(grpc.RpcError) as e:
            call("GetModel", name="no-such-model")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-model" in e.value.details()


class DamagedArtifacts(artifact_service_pb2_grpc.ArtifactServiceServicer):
    """Serves what emberd never sends (its files are hashed as they stream): a file whose
    bytes do not match its sha256, and a path that climbs out of the download folder."""

    def DownloadArtifact(self, request, context):  # noqa: N802
        R = artifact_service_pb2.DownloadArtifactResponse
        good = b"intact bytes"
        yield R(path="ok/good.txt", offset=0, data=good, last=True, sha256=hashlib.sha256(good).hexdigest())
        if request.id == "damaged":
            yield R(path="ok/bad.bin", offset=0, data=b"first half, ", last=False)
            yield R(path="ok/bad.bin", offset=12, data=b"second half", last=True, sha256=hashlib.sha256(b"something else").hexdigest())
        else:
            yield R(path="../escaped.txt", offset=0, data=good, last=True, sha256=hashlib.sha256(good).hexdigest())


@pytest.mark.node
def test_node_download_checks_each_files_sha256_and_path(tmp_path):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    artifact_service_pb2_grpc.add_ArtifactServiceServicer_to_server(DamagedArtifacts(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    script = (
        "const { Client } = require('./lib/client');"
        "const c = new Client(process.argv[1]);"
        "c.download(process.argv[2], process.argv[3]).then((files) => console.log(JSON.stringify(files)),"
        " (err) => console.log(`${err.codeName}: ${err.details}`)).finally(() => c.close());"
    )
    try:
        results = {id: node("-e", script, f"127.0.0.1:{port}", id, str(tmp_path / id / "dest"), timeout=60) for id in ("damaged", "escaping")}
    finally:
        server.stop(0)
    damaged = results["damaged"].stdout.strip()
    assert damaged.startswith("DATA_LOSS: ok/bad.bin: sha256 ") and "download again" in damaged, results["damaged"]
    assert sorted(p.name for p in (tmp_path / "damaged" / "dest" / "ok").iterdir()) == ["good.txt"]  # no bad.bin, no .part left
    assert results["escaping"].stdout.strip().startswith('DATA_LOSS: artifact path "../escaped.txt" escapes'), results["escaping"]
    assert sorted(p.name for p in (tmp_path / "escaping").iterdir()) == ["dest"]

