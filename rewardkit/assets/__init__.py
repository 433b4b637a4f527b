"""Offline assets shipped with rewardkit, and the seeded script that builds them.

Load them by name through :mod:`rewardkit.hub` (``asset:NAME``), exactly as a
hub id would load:

- ``asset:dialogues.jsonl``: 500 two-person dialogues with reference summaries
  (``id``, ``dialogue``, ``summary``, ``toxic``), about a third of them rude;
- ``asset:tiny-t5``: a tiny flan-t5-shaped summariser (T5ForConditionalGeneration);
- ``asset:tiny-hate-roberta``: a tiny RoBERTa classifier, labels ``nothate``/``hate``.

``manifest.json`` lists their sha256 values and measurements. Rebuild with
``python -m rewardkit.assets.build`` (see :mod:`rewardkit.assets.build`).
"""
