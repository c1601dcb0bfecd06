import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from emberd.engine.config import default_text_checkpoint
from emberd.engine.features import LengthBuckets, SpecialTokens, TokenCSR, collate_text


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(default_text_checkpoint())


def _csr(tok, texts, max_len=None):
    """As encode_table stores them: a single text capped at max_len - 2, a pair's sides whole."""
    cap = None if max_len is None else max_len - 2
    return TokenCSR.from_lists(tok(texts, add_special_tokens=False, truncation=cap is not None, max_length=cap)["input_ids"])


@pytest.mark.parametrize("max_len", [16, 24, 128])
def test_collate_matches_the_tokenizers_own_padding(tok, shared_data, max_len):
    sts = shared_data.stsb("dev").head(256)
    a, b = sts.sentence1.tolist(), sts.sentence2.tolist()
    special = SpecialTokens(tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
    rows = list(range(0, 256, 3))
    for cols, texts in [([_csr(tok, a, max_len)], (a,)), ([_csr(tok, a), _csr(tok, b)], (a, b))]:
        ids, mask, types = collate_text(cols, rows, special, max_len, pad_multiple=8)
        ref = tok(*[[t[r] for r in rows] for t in texts], padding=True, pad_to_multiple_of=8,
                  truncation="longest_first", max_length=max_len, return_tensors="pt")
        width = min(max_len, ref["input_ids"].shape[1])
        assert ids.shape[1] == width
        assert torch.equal(ids, ref["input_ids"][:, :width])
        assert torch.equal(mask, ref["attention_mask"][:, :width])
        assert torch.equal(types, ref["token_type_ids"][:, :width])


def test_length_buckets_cover_every_row_once_and_group_lengths():
    lengths = np.random.default_rng(0).integers(1, 60, size=1003)
    s = LengthBuckets(lengths, 32, shuffle=True, seed=1)
    s.set_epoch(2)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(1003))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 10  # random batches would span ~55 tokens
    evals = list(LengthBuckets(lengths, 64, shuffle=False))
    assert sorted(i for b in evals for i in b) == list(range(1003))
