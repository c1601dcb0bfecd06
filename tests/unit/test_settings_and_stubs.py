"""What needs no daemon: settings precedence and the committed stubs against the protos."""

import json


def test_generated_stubs_match_the_protos(tmp_path):
    import pathlib

    from grpc_tools import protoc

    root = pathlib.Path(__file__).resolve().parents[2]
    protos = sorted(str(p.relative_to(root / "protos")) for p in (root / "protos" / "ember" / "v1").glob("*.proto"))
    import grpc_tools

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    outs = [f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    rc = protoc.main(["protoc", f"-I{root / 'protos'}", f"-I{include}", *outs, *protos])
    assert rc == 0
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    committed = root / "clients" / "python"
    for rel in generated:
        assert (committed / rel).read_text() == (tmp_path / rel).read_text(), f"{rel} is stale: run `make protos`"


def test_settings_precedence(tmp_path):
    from emberd.settings import load_settings

    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps({"port": 1111, "root": "/from/file", "max_concurrent_jobs": 3}))
    s = load_settings(["--config", str(cfg), "--port", "2222", "--data-roots", "/a", "--data-roots", "/b"],
                      env={"EMBER_ROOT": "/from/env", "EMBER_PORT": "3333"})
    assert (s.port, s.root, s.max_concurrent_jobs, s.data_roots, s.host) == (2222, "/from/env", 3, ("/a", "/b"), "127.0.0.1")

