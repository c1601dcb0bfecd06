import pytest

from emberd.engine import Config, InvalidArgument


def test_unknown_key_lists_close_valid_ones():
    with pytest.raises(InvalidArgument) as e:
        Config.from_overrides({"model.hf_text.max_txt_len": 64})
    assert "model.hf_text.max_text_len" in str(e.value)


def test_values_are_typed_and_checked():
    cfg = Config.from_overrides({"optim.lr": "3e-4", "env.batch_size": 8, "model.names": ["hf_text"]})
    assert cfg.optim.lr == 3e-4 and cfg.env.batch_size == 8 and cfg.names == ("hf_text",)
    with pytest.raises(InvalidArgument, match="takes a whole number"):
        Config.from_overrides({"env.batch_size": "many"})
    with pytest.raises(InvalidArgument, match="unknown model"):
        Config.from_overrides({"model.names": ["hf_txt"]})


def test_round_trip_and_structural_changes():
    cfg = Config.from_overrides({"model.hf_text.max_text_len": 64, "optim.lr": 1e-3})
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert cfg.structural_changes({"optim.lr": 5.0, "model.hf_text.max_text_len": 64}) == []
    changes = cfg.structural_changes({"model.hf_text.max_text_len": 32, "model.hf_text.checkpoint_name": "/x"})
    assert len(changes) == 2 and "max_text_len" in changes[0]
