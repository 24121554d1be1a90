import os
import random
import subprocess
import sys

import numpy as np

from llm_platform.trainer.data.hashing import normalize_words
from llm_platform.trainer.data.minhash import MinHashConfig, MinHasher, cluster, estimated_jaccard, shingle_hashes

from .conftest import squad_paragraphs


def _shingles(text: str, n: int = 5) -> set[str]:
    words = normalize_words(text).split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def _near_duplicate(text: str, rng: random.Random, target: float = 0.8) -> tuple[str, float] | None:
    """A copy of `text` with words replaced until its 5-gram Jaccard similarity to the original is about `target`."""
    words = text.split()
    original = _shingles(text)
    edits = max(1, round(len(original) / 45))  # each spread-out edit changes ~5 shingles: (m-5k)/(m+5k) = 0.8
    for _ in range(30):
        copy = list(words)
        for i in rng.sample(range(len(copy)), edits):
            copy[i] = f"zq{rng.randrange(10**6)}"
        candidate = " ".join(copy)
        s = _shingles(candidate)
        jaccard = len(original & s) / len(original | s)
        if abs(jaccard - target) <= 0.02:
            return candidate, jaccard
    return None


def test_planted_near_duplicates_at_jaccard_0_8_are_found_with_recall_over_0_9():
    rng = random.Random(0)
    paragraphs = squad_paragraphs(min_words=100)[:800]  # ~700 pairs: recall is measured to about +-0.01
    pairs = [(p, made) for p in paragraphs if (made := _near_duplicate(p, rng)) is not None]
    assert len(pairs) >= 600
    assert abs(np.mean([j for _, (_, j) in pairs]) - 0.8) < 0.01
    hasher = MinHasher()
    docs = [text for original, (copy, _) in pairs for text in (original, copy)]
    clusters = cluster(np.stack([hasher.keys(d) for d in docs]))
    found = sum(clusters.root[2 * i] == clusters.root[2 * i + 1] for i in range(len(pairs)))
    assert found / len(pairs) >= 0.9  # theory for 14 bands x 8 rows at s = 0.8: 1 - (1 - 0.8**8)**14 = 0.924
    assert max(clusters.sizes()) == 2  # no unrelated paragraphs merged into the pairs


def test_distinct_real_paragraphs_are_not_clustered():
    docs = squad_paragraphs(min_words=40)[:1500]
    hasher = MinHasher()
    clusters = cluster(np.stack([hasher.keys(d) for d in docs]))
    merged = len(docs) - int(clusters.keep.sum())
    assert merged <= 5  # SQuAD has a few genuinely repeated paragraphs; unrelated text never collides this often


def test_cluster_keeps_the_first_document_of_each_connected_component():
    keys = np.array([[1, 10], [2, 20], [1, 30], [3, 30], [4, 40]], dtype=np.uint64)  # 0~2 (band 0), 2~3 (band 1)
    clusters = cluster(keys)
    assert clusters.root.tolist() == [0, 1, 0, 0, 4]
    assert clusters.keep.tolist() == [True, True, False, False, True]
    assert clusters.sizes() == {3: 1}


def test_signatures_estimate_jaccard():
    hasher = MinHasher(MinHashConfig(bands=64, rows=8))
    a = squad_paragraphs(min_words=120)[0]
    words = a.split()
    b = " ".join(words[: len(words) // 2] + ["unrelated"] * 3 + words[len(words) // 2 :])
    truth = len(_shingles(a) & _shingles(b)) / len(_shingles(a) | _shingles(b))
    assert abs(estimated_jaccard(hasher.signature(a), hasher.signature(b)) - truth) < 0.06


def test_shingle_hashes_are_the_same_in_another_process():
    text = squad_paragraphs()[0]
    script = (
        "import sys; from llm_platform.trainer.data.minhash import shingle_hashes; "
        "sys.stdout.write(shingle_hashes(sys.stdin.read(), 5).tobytes().hex())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], input=text, capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout == shingle_hashes(text, 5).tobytes().hex()


def test_formatting_differences_do_not_change_shingles():
    text = squad_paragraphs()[1]
    reformatted = "  " + text.upper().replace(" ", "\n").replace(",", " ,") + " "
    assert np.array_equal(shingle_hashes(text, 5), shingle_hashes(reformatted, 5))
