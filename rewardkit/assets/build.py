"""Build the offline assets: dialogues, a tiny T5 policy and a tiny hate classifier.

    python -m rewardkit.assets.build [--out DIR] [--seed N] [--threads N] [--verify]

Writes, under ``--out`` (default: the ``rewardkit/assets`` package directory):

- ``dialogues.jsonl``: 500 dialogues with reference summaries (``id``,
  ``dialogue``, ``summary``, ``toxic``), about a third of them rude;
- ``tiny-t5/``: a flan-t5-shaped ``T5ForConditionalGeneration`` trained on
  prompt -> summary, with a locally trained Unigram ``T5Tokenizer``;
- ``tiny-hate-roberta/``: a ``RobertaForSequenceClassification`` with labels
  ``nothate``/``hate`` and a locally trained byte-level BPE tokenizer;
- ``manifest.json``: sha256 of every file, parameter counts and measurements
  (classifier held-out accuracy, the T5's sampled hate rate, ...).

All text comes from :mod:`rewardkit.assets.corpus`, written for this project;
nothing is downloaded. The same seed and thread count give byte-identical
files; ``--verify`` rebuilds into a temporary directory and compares sha256
values with the manifest in ``--out``.

It runs on one torch thread by default, about five minutes. Floating-point
sums split over several threads come out in another order, so the weights
depend on the thread count; one thread is the count every machine has, and
on a shared machine two threads were far slower, not faster (they wait on
each other). ``--threads 2`` builds equally good assets, with other hashes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rewardkit.assets.corpus import PROMPT_TEMPLATE, make_dialogues, prompt, rudeness_example
from rewardkit.assets.training import n_params

N_DIALOGUES = 500
N_T5_PAIRS = 12000
AUX_FRACTION = 0.3
N_CLASSIFIER_DIALOGUES = 2500
T5_STEPS = 1600
T5_BATCH = 16
CLASSIFIER_EPOCHS = 2
N_SAMPLED = 300
#: The recipes keep dialogues with MIN_CHARS < len <= MAX_CHARS, as the seed notebook did.
MIN_CHARS, MAX_CHARS = 200, 1000


def sub_seed(seed: int, part: str) -> int:
    """An independent seed per part of the build, stable across Python runs."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{part}".encode()).digest()[:4], "big")


def sha256_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the manifest, keyed by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"
            and p.suffix in {".json", ".jsonl", ".safetensors", ".txt"}}


def _write_dialogues(out: Path, dialogues) -> dict:
    with open(out / "dialogues.jsonl", "w", encoding="utf-8") as f:
        for d in dialogues:
            f.write(json.dumps(d.record(), ensure_ascii=False) + "\n")
    lengths = [len(d.text) for d in dialogues]
    return {"count": len(dialogues), "toxic_fraction": round(sum(d.toxic for d in dialogues) / len(dialogues), 4),
            "rude_dialogue_fraction": round(sum(d.rude for d in dialogues) / len(dialogues), 4),
            "in_length_range_fraction": round(sum(MIN_CHARS < n <= MAX_CHARS for n in lengths) / len(lengths), 4),
            "chars": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)}}


def _build_classifier(out: Path, seed: int, log) -> tuple[object, object, dict]:
    from rewardkit.assets.classifier import build_classifier, hate_probability, train_classifier
    from rewardkit.assets.corpus import labelled_lines
    from rewardkit.assets.vocab import train_roberta_tokenizer

    lines = labelled_lines(sub_seed(seed, "classifier"), N_CLASSIFIER_DIALOGUES)
    tokenizer = train_roberta_tokenizer([t for t, _ in lines], vocab_size=2000)
    model = build_classifier(len(tokenizer), sub_seed(seed, "classifier-init"))
    stats = train_classifier(model, tokenizer, lines, epochs=CLASSIFIER_EPOCHS, seed=sub_seed(seed, "classifier-train"),
                             log=log)
    # Held-out: new draws, rude one-liners from templates never trained on, and
    # only texts the classifier has not seen verbatim (many polite turns repeat).
    seen = {t for t, _ in lines}
    held = [(t, y) for t, y in labelled_lines(sub_seed(seed, "classifier-held-out"), 500, held_out=True)
            if t not in seen]
    probs = hate_probability(model, tokenizer, [t for t, _ in held])
    correct = sum((p > 0.5) == bool(y) for p, (_, y) in zip(probs, held))
    model.save_pretrained(out / "tiny-hate-roberta")
    tokenizer.save_pretrained(out / "tiny-hate-roberta")
    log(f"  classifier held-out accuracy {correct / len(held):.4f} on {len(held)} unseen lines")
    return model, tokenizer, {
        "params": n_params(model), "vocab_size": len(tokenizer), "labels": model.config.id2label,
        "train": {"lines": len(lines), "hate_fraction": round(sum(y for _, y in lines) / len(lines), 4),
                  "epochs": CLASSIFIER_EPOCHS, "final_loss": stats["final_loss"]},
        "held_out": {"lines": len(held), "hate_lines": sum(y for _, y in held),
                     "accuracy": round(correct / len(held), 4)}}


def _build_t5(out: Path, seed: int, log) -> tuple[object, object, dict]:
    from rewardkit.assets.t5 import T5_SHAPE, build_t5, save_t5, train_t5
    from rewardkit.assets.vocab import train_t5_tokenizer

    pairs = make_dialogues(sub_seed(seed, "t5-pairs"), N_T5_PAIRS)
    # Train the vocabulary on turns and summaries (not whole prompts, whose
    # repeated template line would skew the piece statistics), plus the template.
    texts = [f"#Person{s}#: {t}" for d in pairs for s, t, _ in d.turns] + [d.summary for d in pairs]
    texts += [PROMPT_TEMPLATE] * 100
    tokenizer = train_t5_tokenizer(texts, vocab_size=1600)
    model = build_t5(len(tokenizer), sub_seed(seed, "t5-init"))
    sources, targets = [prompt(d.text) for d in pairs], [d.summary for d in pairs]
    # The auxiliary "who is rude?" task (see corpus.RUDENESS_TEMPLATE) on part of the dialogues.
    for d in pairs[:int(len(pairs) * AUX_FRACTION)]:
        question, answer = rudeness_example(d)
        sources.append(question)
        targets.append(answer)
    stats = train_t5(model, tokenizer, sources, targets, steps=T5_STEPS, batch_size=T5_BATCH,
                     seed=sub_seed(seed, "t5-train"), log=log)
    save_t5(model, tokenizer, out / "tiny-t5")
    return model, tokenizer, {
        "params": n_params(model), "vocab_size": len(tokenizer), "shape": T5_SHAPE,
        "train": {"pairs": len(pairs), "rudeness_questions": len(sources) - len(pairs), "steps": T5_STEPS, "batch_size": T5_BATCH, "final_loss": stats["final_loss"]}}


def _reload(out: Path):
    """The saved T5 and classifier with their tokenizers, loaded the way users load them."""
    from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

    t5 = AutoModelForSeq2SeqLM.from_pretrained(out / "tiny-t5", use_safetensors=True)
    clf = AutoModelForSequenceClassification.from_pretrained(out / "tiny-hate-roberta", use_safetensors=True)
    assert t5.lm_head.weight is not t5.shared.weight, "the T5's lm_head came back tied"
    return (t5.eval(), AutoTokenizer.from_pretrained(out / "tiny-t5"),
            clf.eval(), AutoTokenizer.from_pretrained(out / "tiny-hate-roberta"))


def _measure_samples(t5, t5_tok, clf, clf_tok, dialogues, seed: int) -> dict:
    """Sample summaries of shipped (unseen) dialogues and score them with the classifier."""
    from rewardkit.assets.classifier import hate_probability
    from rewardkit.assets.t5 import sample

    kept = [d for d in dialogues if MIN_CHARS < len(d.text) <= MAX_CHARS][:N_SAMPLED]
    texts, ended = sample(t5, t5_tok, [prompt(d.text) for d in kept], seed=sub_seed(seed, "samples"))
    hate = hate_probability(clf, clf_tok, texts)
    rude = [h for h, d in zip(hate, kept) if d.rude]
    polite = [h for h, d in zip(hate, kept) if not d.rude]
    result = {
        "prompts": len(kept), "generation": {"do_sample": True, "top_k": 0, "top_p": 1.0, "max_new_tokens": 32},
        "hate_mean": round(statistics.fmean(hate), 4),
        "hate_mean_rude_dialogues": round(statistics.fmean(rude), 4),
        "hate_mean_polite_dialogues": round(statistics.fmean(polite), 4),
        "hate_fraction_over_0.5": round(sum(h > 0.5 for h in hate) / len(hate), 4),
        "eos_fraction": round(sum(ended) / len(ended), 4),
        "words_mean": round(statistics.fmean(len(t.split()) for t in texts), 2),
        "examples": [{"id": d.id, "sample": t, "hate": round(h, 4)} for d, t, h in list(zip(kept, texts, hate))[:8]],
    }
    result.update(_judge(texts, kept, dialogues))
    return result


def _judge(texts, kept, dialogues) -> dict:
    """The independent judge's view (``alt-profanity-check``), when it is installed."""
    try:
        from profanity_check import predict_prob
    except ImportError:
        return {}
    samples = [float(p) for p in predict_prob(texts)]
    refs_rude = [float(p) for p in predict_prob([d.summary for d in dialogues if d.toxic])]
    refs_polite = [float(p) for p in predict_prob([d.summary for d in dialogues if not d.toxic])]
    return {"judge_profanity_check": {
        "samples_mean": round(statistics.fmean(samples), 4),
        "samples_mean_rude_dialogues": round(statistics.fmean(p for p, d in zip(samples, kept) if d.rude), 4),
        "samples_mean_polite_dialogues": round(statistics.fmean(p for p, d in zip(samples, kept) if not d.rude), 4),
        "reference_rude_summaries_mean": round(statistics.fmean(refs_rude), 4),
        "reference_polite_summaries_mean": round(statistics.fmean(refs_polite), 4)}}


def _log(message: str) -> None:
    print(message, flush=True)


def build(out: Path, seed: int = 0, *, threads: int = 1, log=_log) -> dict:
    """Build every asset into ``out`` and return the manifest (also written there)."""
    import tokenizers
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bars in the log
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    dialogues = make_dialogues(sub_seed(seed, "dialogues"), N_DIALOGUES)
    manifest: dict = {"seed": seed, "threads": threads, "command": "python -m rewardkit.assets.build",
                      "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                   "tokenizers": tokenizers.__version__},
                      "dialogues.jsonl": _write_dialogues(out, dialogues)}
    log(f"dialogues: {manifest['dialogues.jsonl']}")
    log("training the classifier ...")
    clf, clf_tok, manifest["tiny-hate-roberta"] = _build_classifier(out, seed, log)
    log("training the T5 ...")
    t5, t5_tok, manifest["tiny-t5"] = _build_t5(out, seed, log)
    # Measure what ships: the models as from_pretrained loads them back.
    t5, t5_tok, clf, clf_tok = _reload(out)
    manifest["tiny-t5"]["samples"] = _measure_samples(t5, t5_tok, clf, clf_tok, dialogues, seed)
    manifest["sha256"] = sha256_tree(out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    log(f"built in {time.perf_counter() - start:.0f}s into {out}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from rewardkit.hub import assets_dir

    parser = argparse.ArgumentParser(prog="python -m rewardkit.assets.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=assets_dir(), help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for all text and training (default: 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; the same count is needed for byte-identical weights (default: 1)")
    parser.add_argument("--verify", action="store_true",
                        help="rebuild into a temporary directory and compare sha256 values with OUT/manifest.json")
    args = parser.parse_args(argv)
    if not args.verify:
        manifest = build(args.out, args.seed, threads=args.threads)
        print(json.dumps({k: v for k, v in manifest.items() if k != "sha256"}, indent=2))
        return 0
    expected = json.loads((args.out / "manifest.json").read_text())["sha256"]
    with tempfile.TemporaryDirectory() as tmp:
        got = build(Path(tmp), args.seed, threads=args.threads)["sha256"]
    differ = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
    for name in differ:
        print(f"differs: {name}")
    print("identical" if not differ else f"{len(differ)} file(s) differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
