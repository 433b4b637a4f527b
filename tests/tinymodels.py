"""A seeded, random-weight tiny seq2seq model and dialogue file for fast runner tests.

The shipped assets (asset:tiny-t5) are for learning; these are for plumbing:
built in a second, independent of how the assets were trained.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ("hello there how are you fine thanks the meeting is at noon please come book a table "
         "tomorrow we can talk later idiot stupid").split()


def build(out: Path, *, seed: int = 0, rows: int = 64) -> Path:
    """Write ``out/t5`` (model + tokenizer), ``out/data.jsonl`` and ``out/recipe.yaml``; returns the recipe."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    data = []
    for i in range(rows):
        turns = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) for _ in range(4)]
        dialogue = "\n".join(f"#Person{1 + k % 2}#: {t}" for k, t in enumerate(turns))
        data.append({"id": i, "dialogue": dialogue, "summary": " ".join(rng.choice(WORDS) for _ in range(6))})
    (out / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(WORDS + ["Summarize the following conversation . Summary : #Person1# #Person2#"],
                            trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(out / "t5")
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=len(fast), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(cfg).save_pretrained(out / "t5")
    recipe = out / "recipe.yaml"
    recipe.write_text(
        "seed: 1\n"
        "model: {name: t5}\n"
        "lora: {r: 4, alpha: 8}\n"
        "data: {source: data.jsonl, min_chars: 20, max_chars: 5000}\n"
        "rewards:\n"
        "  - name: length\n"
        "    params: {target_words: 6}\n"
        "ppo: {learning_rate: 1.0e-3, batch_size: 4, mini_batch_size: 2, max_ppo_steps: 6}\n"
        "generation: {max_new_tokens: 8, min_length: 2}\n"
        "output: {checkpoint_every: 2, sample_every: 2}\n")
    return recipe
