import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from emberd.engine.config import default_text_checkpoint
from emberd.engine.features import LengthBuckets, SpecialTokens, TokenCSR, collate_text, eval_batches


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
    assert sorted(i for b in evals for i in b) == list(range(1003)) and len(evals) == len(LengthBuckets(lengths, 64, shuffle=False))


def _cost(lengths, batches, overhead):
    return sum(overhead + len(b) * max(int(lengths[b].max()), 1) for b in batches)


def test_eval_batches_are_the_cheapest_cuts_of_the_sorted_rows():
    rng = np.random.default_rng(0)
    for trial in range(30):
        n, max_rows = int(rng.integers(1, 11)), int(rng.integers(1, 6))
        lengths = rng.integers(0, 64, size=n)
        batches = eval_batches(lengths, max_rows, overhead=20)
        assert sorted(i for b in batches for i in b) == list(range(n)) and all(len(b) <= max_rows for b in batches)
        # every way of cutting the sorted rows into batches of <= max_rows: none is cheaper
        order = np.argsort(lengths, kind="stable")
        cuts = (np.split(order, [i for i in range(1, n) if mask >> (i - 1) & 1]) for mask in range(2 ** (n - 1)))
        cheapest = min(_cost(lengths, c, 20) for c in cuts if all(len(b) <= max_rows for b in c))
        assert _cost(lengths, batches, 20) == cheapest, trial


def test_eval_batches_cut_a_small_mixed_batch_and_keep_large_tables_in_full_batches():
    # 16 requests of very different lengths (what the dynamic batcher coalesces): fewer padded tokens
    lengths = np.array([4, 5, 5, 6, 7, 8, 9, 10, 12, 14, 18, 22, 30, 41, 52, 60])
    batches = eval_batches(lengths, 64)
    assert 1 < len(batches) < 16
    assert _cost(lengths, batches, 45) < 45 + 16 * 60
    # equal lengths (an image-only model has none): as few batches as max_rows allows
    assert [len(b) for b in eval_batches(np.zeros(130, dtype=int), 64)] == [2, 64, 64]
    table = np.random.default_rng(1).integers(1, 60, size=5000)
    assert np.mean([len(b) for b in eval_batches(table, 64)]) > 50
