"""Rehearsal: the seed's experiment offline, against stand-ins found by their real hub ids.

:mod:`rewardkit.rehearsal.build` writes a Hugging Face cache (an ``HF_HOME``)
holding ``google/flan-t5-base``, ``facebook/roberta-hate-speech-dynabench-r4-target``,
``unitary/toxic-bert`` and ``knkarthick/dialogsum`` with the real configs,
vocabulary sizes, labels and columns, and random weights, so that
``rewardkit run recipes/detox.yaml`` runs unchanged on a machine without the
hub. Nothing in rewardkit knows about it: the cache is found through
``HF_HOME`` (or ``HF_HUB_CACHE`` + ``HF_DATASETS_CACHE``) like a real one.
"""
