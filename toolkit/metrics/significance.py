"""How far to trust a difference: intervals over seeds and a paired bootstrap over test examples.

* :func:`seed_interval`: mean and Student-t interval of one metric over training seeds
  (``mean ± t(1 - (1 - confidence) / 2, n - 1) · s / √n``, ``s`` the sample standard
  deviation): how much the result moves when only the seed changes.
* :func:`paired_bootstrap`: the difference ``metric(system) - metric(reference)`` of two
  systems scored on the same test set, with a percentile interval and a two-sided p-value
  from resampling test examples (Koehn 2004; the test behind sacreBLEU's
  ``--paired-bs``): how much the difference moves with the test sample. The metric is any
  corpus-level metric that is a function of per-example parts *summed* over the test set
  (:class:`CorpusMetric`): accuracy and macro-F1 (per sentence), WER/CER (per utterance:
  edits and reference length, so a resample's WER is its summed edits over its summed
  reference words), corpus BLEU and chrF (sacreBLEU's own per-sentence sufficient
  statistics), captioning BLEU-n (per-image clipped n-gram counts) and CIDEr-D (per-image
  scores; document frequencies from the whole test set's references, which both systems
  share). Resample ``b`` draws ``n`` examples with replacement; the *same* draw scores both
  systems (paired). Seeded: the same inputs give the same numbers.

  p-value (two-sided, Koehn's share of resamples in which the sign of the difference flips):
  ``p = min(1, 2 · (1 + min(#{d*_b <= 0}, #{d*_b >= 0})) / (B + 1))``; the ``+1`` keeps it a
  valid p-value, so the smallest is ``2 / (B + 1)``. ``p < 0.05`` goes with a 95 %
  percentile interval that excludes 0; a system compared with itself gets ``p = 1``.

* Several seeds: with one pair ``(reference, system)`` of per-example parts per seed (the
  same seed of both types, the same test set), resample ``b`` applies the same example draw
  to every pair and the pooled statistic is the mean over seeds of the per-seed differences
  (observed and resampled alike). The interval therefore covers test-sample variation of the
  seed-averaged difference; seed-to-seed variation is what :func:`seed_interval` shows.

:func:`corpus_metric` builds the parts of a metric from a run's ``per_example.jsonl.gz``
(format in toolkit/runs.py); :func:`compare_per_example` pairs two such files.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 12345
CONFIDENCE = 0.95


# ----- seeds -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedInterval:
    """Mean over ``n`` seeds and its Student-t interval (None below two seeds)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    confidence: float = CONFIDENCE


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy import stats  # a dependency of scikit-image, which the toolkit requires

    return float(stats.t.ppf(q, df))


def seed_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> SeedInterval:
    """Mean of ``values`` (one per seed) and its two-sided Student-t interval."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("seed_interval needs at least one value")
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return SeedInterval(mean, None, None, len(vals), confidence)
    half = t_quantile(1 - (1 - confidence) / 2, len(vals) - 1)
    half *= statistics.stdev(vals) / math.sqrt(len(vals))
    return SeedInterval(mean, mean - half, mean + half, len(vals), confidence)


# ----- the paired bootstrap -------------------------------------------------------------------
Score = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CorpusMetric:
    """A corpus metric as a function of per-example parts summed over the test set.

    Attributes:
        keys: the resampling unit of each row of ``parts`` (example id, or utterance id),
            for pairing two systems; ``truth`` what the system was scored against per key
            (label, reference), so two runs on different test sets are refused.
        parts: ``(n, k)`` per-example parts.
        score: summed parts ``(m, k)`` -> ``m`` metric values, in the units of metrics.json.
    """

    name: str
    keys: list[Any]
    parts: np.ndarray
    score: Score
    truth: list[Any] = field(default_factory=list)

    def value(self) -> float:
        return float(self.score(self.parts.sum(0, keepdims=True))[0])


@dataclass(frozen=True)
class BootstrapResult:
    """``difference = metric(system) - metric(reference)`` on the full test set (the mean
    over seeds when pooled), its percentile interval and two-sided p-value."""

    difference: float
    low: float
    high: float
    p_value: float
    resamples: int
    examples: int
    seeds: int = 1
    reference_value: float = math.nan
    system_value: float = math.nan
    confidence: float = CONFIDENCE

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def resample_counts(n: int, resamples: int, seed: int, chunk: int | None = None):
    """Yield ``(m, n)`` arrays: how often each of ``n`` examples is drawn in each of ``m``
    resamples (``n`` draws with replacement each), ``resamples`` rows in all. The draws
    depend only on ``n``, ``resamples`` and ``seed``."""
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, min(resamples, 2_000_000 // max(n, 1)))
    done = 0
    while done < resamples:
        m = min(chunk, resamples - done)
        idx = rng.integers(0, n, size=(m, n))
        flat = (idx + n * np.arange(m)[:, None]).ravel()
        yield np.bincount(flat, minlength=m * n).reshape(m, n).astype(np.float64)
        done += m


def paired_bootstrap(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    score: Score,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> BootstrapResult:
    """Paired bootstrap of ``score(system) - score(reference)`` over test examples.

    Args:
        pairs: per seed ``(reference_parts, system_parts)``, each ``(n, k)`` with rows
            aligned (row ``i`` is the same test example in both, and in every pair).
        score: summed parts ``(m, k)`` -> ``m`` metric values.
        resamples: bootstrap resamples (``B``).
        seed: seeds the example draws (the same for every pair: paired across seeds too).
        confidence: of the percentile interval.

    Returns:
        The observed difference (mean over pairs), the interval, the p-value.
    """
    if not pairs:
        raise ValueError("paired_bootstrap needs at least one (reference, system) pair")
    pairs = [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in pairs]
    n = pairs[0][0].shape[0]
    for a, b in pairs:
        if a.shape != b.shape or a.shape[0] != n:
            raise ValueError(
                f"parts of shapes {a.shape} and {b.shape}: every pair needs the same {n} "
                "test examples in the same order"
            )
    if n == 0:
        raise ValueError("paired_bootstrap needs at least one test example")
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_values = [float(score(a.sum(0, keepdims=True))[0]) for a, _ in pairs]
        sys_values = [float(score(b.sum(0, keepdims=True))[0]) for _, b in pairs]
        observed = float(np.mean(np.subtract(sys_values, ref_values)))
        diffs = []
        for counts in resample_counts(n, resamples, seed):
            d = np.zeros(counts.shape[0])
            for a, b in pairs:
                d += score(counts @ b) - score(counts @ a)
            diffs.append(d / len(pairs))
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)]  # a resample whose metric is undefined (e.g. no reference words)
    if not len(d) or not math.isfinite(observed):
        return BootstrapResult(observed, math.nan, math.nan, math.nan, 0, n, len(pairs),
                               float(np.mean(ref_values)), float(np.mean(sys_values)),
                               confidence)  # fmt: skip
    tail = (1 - confidence) / 2
    low, high = np.quantile(d, [tail, 1 - tail])
    flips = min(int(np.sum(d <= 0)), int(np.sum(d >= 0)))
    p = 2 * (1 + flips) / (len(d) + 1)
    return BootstrapResult(
        difference=observed, low=float(low), high=float(high), p_value=float(min(1.0, p)),
        resamples=len(d), examples=n, seeds=len(pairs),
        reference_value=float(np.mean(ref_values)), system_value=float(np.mean(sys_values)),
        confidence=confidence,
    )  # fmt: skip


# ----- metrics from per-example parts -----------------------------------------------------------
def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def accuracy_metric(keys, labels, predicted, name: str = "accuracy") -> CorpusMetric:
    """Share of examples with ``predicted == label`` (parts: correct)."""
    parts = np.array([[float(p == y), 1.0] for y, p in zip(labels, predicted, strict=True)])
    return CorpusMetric(name, list(keys), parts.reshape(-1, 2),
                        lambda s: _ratio(s[:, 0], s[:, 1]), list(labels))  # fmt: skip


def macro_f1_metric(keys, labels, predicted, classes: Sequence[str] | None = None) -> CorpusMetric:
    """Macro-F1 over ``classes`` (parts: per class true positive, false positive, false
    negative); a class with none of the three in a (re)sample is left out of the mean, as
    torchmetrics' ``MulticlassF1Score(average="macro")`` does."""
    classes = list(classes or sorted(set(labels) | set(predicted)))
    c = len(classes)
    pos = {k: i for i, k in enumerate(classes)}
    parts = np.zeros((len(labels), 3 * c))
    for row, (y, p) in enumerate(zip(labels, predicted, strict=True)):
        if y == p:
            parts[row, pos[y]] = 1
        else:
            parts[row, c + pos[p]] = 1  # false positive of the predicted class
            parts[row, 2 * c + pos[y]] = 1  # false negative of the true class

    def score(s: np.ndarray) -> np.ndarray:
        tp, fp, fn = s[:, :c], s[:, c : 2 * c], s[:, 2 * c :]
        den = 2 * tp + fp + fn
        f1 = _ratio(2 * tp, den)
        present = den > 0
        return np.where(present, f1, 0).sum(1) / np.maximum(present.sum(1), 1)

    return CorpusMetric("f1_macro", list(keys), parts, score, list(labels))


def sacrebleu_metric(
    keys, hypotheses: Sequence[str], references: Sequence[str], name: str = "bleu",
    tokenize: str = "13a",
) -> CorpusMetric:  # fmt: skip
    """Corpus BLEU or chrF (sacreBLEU, one reference) from sacreBLEU's own per-sentence
    sufficient statistics (``Metric._extract_corpus_statistics``, scored by
    ``_compute_score_from_stats``, as ``sacrebleu.significance`` does)."""
    from sacrebleu.metrics import BLEU, CHRF

    metric = BLEU(tokenize=tokenize) if name == "bleu" else CHRF()
    stats = np.array(metric._extract_corpus_statistics(list(hypotheses), [list(references)]),
                     dtype=np.float64)  # fmt: skip

    def score(s: np.ndarray) -> np.ndarray:
        return np.array([metric._compute_score_from_stats(row).score for row in s])

    return CorpusMetric(name, list(keys), stats.reshape(len(hypotheses), -1), score,
                        list(references))  # fmt: skip


def caption_bleu_metric(keys, hypotheses, references, n: int = 4) -> CorpusMetric:
    """Captioning BLEU-``n`` × 100 (toolkit.metrics.caption; parts: per-image clipped n-gram
    counts and lengths)."""
    from toolkit.metrics.caption import bleu_from_statistics, bleu_statistics

    parts = np.array([bleu_statistics(h, r) for h, r in zip(hypotheses, references, strict=True)],
                     dtype=np.float64).reshape(len(hypotheses), -1)  # fmt: skip

    def score(s: np.ndarray) -> np.ndarray:
        return np.array([100 * bleu_from_statistics(row)[n - 1] for row in s])

    return CorpusMetric(f"bleu{n}", list(keys), parts, score,
                        [tuple(r) for r in references])  # fmt: skip


def cider_metric(keys, hypotheses, references) -> CorpusMetric:
    """CIDEr-D: the mean of per-image scores (document frequencies over every reference of
    the test set, fixed while images are resampled; both systems share them)."""
    from toolkit.metrics.caption import cider_d

    _, per_image = cider_d(list(hypotheses), list(references))
    parts = np.array([[s, 1.0] for s in per_image]).reshape(-1, 2)
    return CorpusMetric("cider", list(keys), parts, lambda s: _ratio(s[:, 0], s[:, 1]),
                        [tuple(r) for r in references])  # fmt: skip


def asr_metric(records: Sequence[dict[str, Any]], conditions: Sequence[str], name: str):
    """WER / CER of one test condition (``wer`` = clean, ``wer_<condition>``) or their mean
    over noise types at one level (``wer_avg_<snr>``), resampling utterances: a resample's
    WER is its summed word errors over its summed reference words (parts per utterance:
    ``[errors, reference length]`` per condition)."""
    kind = "word" if name.startswith("wer") else "char"
    rest = name[3:].lstrip("_")
    if not rest:
        chosen = ["clean"]
    elif rest.startswith("avg_"):
        level = rest[4:]
        chosen = [c for c in conditions
                  if c.endswith(f"_{level}") and not c.startswith("reverb")]  # fmt: skip
    else:
        chosen = [rest]
    chosen = [c for c in chosen if c in conditions]
    if not chosen:
        raise ValueError(f"{name}: no such test condition in {list(conditions)}")
    col = {c: i for i, c in enumerate(chosen)}
    utts = sorted({r["id"] for r in records if r["condition"] in col})
    row = {u: i for i, u in enumerate(utts)}
    parts = np.zeros((len(utts), 2 * len(chosen)))
    truth: list[Any] = [None] * len(utts)
    for r in records:
        if r["condition"] in col:
            i, j = row[r["id"]], 2 * col[r["condition"]]
            parts[i, j] = r[f"{kind}_errors"]
            parts[i, j + 1] = r[f"ref_{kind}s"]
            if r["condition"] == chosen[0]:
                truth[i] = r.get("reference")

    def score(s: np.ndarray) -> np.ndarray:
        rates = np.stack([_ratio(s[:, 2 * j], s[:, 2 * j + 1]) for j in range(len(chosen))], 1)
        return rates.mean(1)

    return CorpusMetric(name, utts, parts, score, truth)


def _classification(header: dict[str, Any], records: Sequence[dict[str, Any]],
                    metric: str) -> CorpusMetric:  # fmt: skip
    ids = [r["id"] for r in records]
    labels = [r["label"] for r in records]
    predicted = [r["predicted"] for r in records]
    if metric == "accuracy":
        return accuracy_metric(ids, labels, predicted)
    return macro_f1_metric(ids, labels, predicted, header.get("labels"))


def _hypothesis_reference(header: dict[str, Any], records: Sequence[dict[str, Any]],
                          metric: str) -> CorpusMetric:  # fmt: skip
    return sacrebleu_metric([r["id"] for r in records], [r["hypothesis"] for r in records],
                            [r["reference"] for r in records], metric,
                            header.get("bleu_tokenize", "13a"))  # fmt: skip


def _hypothesis_references(header: dict[str, Any], records: Sequence[dict[str, Any]],
                           metric: str) -> CorpusMetric:  # fmt: skip
    ids = [r["id"] for r in records]
    hyps = [r["hypothesis"] for r in records]
    refs = [list(r["references"]) for r in records]
    if metric == "cider":
        return cider_metric(ids, hyps, refs)
    return caption_bleu_metric(ids, hyps, refs, int(metric[-1]))


def _error_rates(header: dict[str, Any], records: Sequence[dict[str, Any]],
                 metric: str) -> CorpusMetric:  # fmt: skip
    return asr_metric(records, header.get("conditions") or [], metric)


@dataclass(frozen=True)
class PerExampleKind:
    """How the per-example records of one ``kind`` (the file header's, toolkit/runs.py) are
    bootstrapped: the metric names (``accepts``: which names it takes, default
    ``metric in metrics``) and ``build(header, records, metric) -> CorpusMetric``."""

    metrics: tuple[str, ...]
    build: Callable[[dict[str, Any], Sequence[dict[str, Any]], str], CorpusMetric]
    accepts: Callable[[str], bool] | None = None

    def takes(self, metric: str) -> bool:
        return self.accepts(metric) if self.accepts else metric in self.metrics


#: per-example kind -> its bootstrap; the per-example formats of toolkit/runs.py. A recipe
#: writing records of a new kind adds one with :func:`register_kind`.
KINDS: dict[str, PerExampleKind] = {}


def register_kind(
    kind: str, metrics: Sequence[str],
    build: Callable[[dict[str, Any], Sequence[dict[str, Any]], str], CorpusMetric],
    accepts: Callable[[str], bool] | None = None,
) -> None:  # fmt: skip
    """Make ``corpus_metric`` (and so the paired bootstrap) read per-example files of
    ``kind``."""
    KINDS[kind] = PerExampleKind(tuple(metrics), build, accepts)


register_kind("classification", ("accuracy", "f1_macro"), _classification)
register_kind("translation", ("bleu", "chrf"), _hypothesis_reference)
register_kind("captioning", ("bleu1", "bleu2", "bleu3", "bleu4", "cider"),
              _hypothesis_references)  # fmt: skip
register_kind("asr", ("wer", "cer", "wer_<condition>", "cer_<condition>", "wer_avg_<level>"),
              _error_rates, lambda metric: metric[:3] in ("wer", "cer"))  # fmt: skip


def corpus_metric(
    header: dict[str, Any], records: Sequence[dict[str, Any]], metric: str
) -> CorpusMetric:
    """The per-example parts of ``metric`` from a run's per-example file.

    Raises:
        ValueError: for a metric the file's kind cannot be bootstrapped on.
    """
    kind = header.get("kind")
    spec = KINDS.get(str(kind))
    if spec is not None and spec.takes(metric):
        return spec.build(header, records, metric)
    raise ValueError(
        f"no per-example bootstrap for {metric!r} of a {kind!r} run; supported: "
        f"{', '.join(spec.metrics if spec else ()) or 'none'}"
    )


def aligned(reference: CorpusMetric, system: CorpusMetric) -> tuple[np.ndarray, np.ndarray]:
    """The two part matrices with rows in the reference's key order.

    Raises:
        ValueError: when the runs were scored on different test examples or references.
    """
    if sorted(map(str, reference.keys)) != sorted(map(str, system.keys)):
        raise ValueError(f"different test sets ({len(reference.keys)} vs "
                         f"{len(system.keys)} examples)")  # fmt: skip
    where = {k: i for i, k in enumerate(system.keys)}
    order = [where[k] for k in reference.keys]
    both = bool(system.truth) and bool(reference.truth)
    if both and [system.truth[i] for i in order] != list(reference.truth):
        raise ValueError("same example ids but different labels/references")
    return reference.parts, system.parts[order]


def compare_per_example(
    pairs: Sequence[tuple[tuple[dict, list], tuple[dict, list]]],
    metric: str,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> BootstrapResult:
    """Paired bootstrap of ``metric`` between per-example files: per seed
    ``((ref_header, ref_records), (sys_header, sys_records))``; every pair on the same test
    set (rows aligned to the first pair's reference)."""
    matrices = []
    score = None
    first_keys = None
    for (rh, rr), (sh, sr) in pairs:
        ref = corpus_metric(rh, rr, metric)
        system = corpus_metric(sh, sr, metric)
        a, b = aligned(ref, system)
        if first_keys is None:
            first_keys, score = list(ref.keys), ref.score
        elif list(ref.keys) != first_keys:
            where = {k: i for i, k in enumerate(ref.keys)}
            if sorted(map(str, where)) != sorted(map(str, first_keys)):
                raise ValueError("the seeds were tested on different test sets")
            order = [where[k] for k in first_keys]
            a, b = a[order], b[order]
        matrices.append((a, b))
    return paired_bootstrap(matrices, score, resamples, seed, confidence)
