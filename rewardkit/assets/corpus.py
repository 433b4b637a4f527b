"""Seeded generator of two-person dialogues, reference summaries and labelled lines.

Everything is drawn from one :class:`random.Random`, so a seed fixes the text
exactly. A dialogue follows a :class:`~rewardkit.assets.scene.Scene`: the
scene's turns with one wording picked per turn, sometimes an opening, a
closing or extra exchanges (so lengths vary, mostly within the 200-1000
characters the recipes keep), and, for the rude share of dialogues, insults
worked into one speaker's turns.

A rude dialogue gets a rude reference summary most of the time and a polite
one otherwise. A model trained on these pairs therefore knows both a rude and
a polite way to sum up the same rude dialogue, and reward pressure can move it
from one to the other; that is what the PPO recipes need.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from rewardkit.assets import rudeness as R
from rewardkit.assets import scenes_life, scenes_service
from rewardkit.assets.scene import CLOSERS, FRIENDS, OPENERS, Scene

#: The prompt template of the seed notebook; the tiny T5 is trained on exactly this.
PROMPT_TEMPLATE = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "

#: All scenes, in a fixed order (the order is part of what the seed determines).
SCENES: tuple[Scene, ...] = scenes_service.SCENES + scenes_life.SCENES

_SLOT = re.compile(r"\{(\w+)\}")


def fill(template: str, values: dict[str, str]) -> str:
    """Replace ``{slot}`` fields with ``values``; ``{Slot}`` capitalises the value.

    :raises KeyError: a slot has no value (a bug in a scene, caught by the tests).
    """
    def one(match: re.Match) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        lower = key[0].lower() + key[1:]
        value = values[lower]
        return value[:1].upper() + value[1:]
    return _SLOT.sub(one, template)


#: A second task the tiny T5 is trained on, flan-style, beside summarising. Without
#: it, a few minutes of training teach the model the *rate* of rude summaries
#: but not which dialogues deserve them (measured: the same rate on polite and
#: rude dialogues); asking who is rude makes the encoder represent it.
RUDENESS_TEMPLATE = "Who is rude in the following conversation?\n\n{dialogue}"


def prompt(dialogue: str) -> str:
    """The summarisation prompt for one dialogue."""
    return PROMPT_TEMPLATE.format(dialogue=dialogue)


def rudeness_example(d: "Dialogue") -> tuple[str, str]:
    """The auxiliary question about ``d`` and its answer: a speaker, "Both" or "Nobody"."""
    if not d.rude:
        answer = "Nobody"
    elif d.extra.get("mutual"):
        answer = "Both"
    else:
        answer = f"#Person{d.extra['speaker']}#"
    return RUDENESS_TEMPLATE.format(dialogue=d.text), answer


@dataclass
class Dialogue:
    """One generated dialogue with its reference summary.

    :param id: position in the generated set.
    :param scene: name of the scene it follows.
    :param turns: ``(speaker, text, rude)`` per turn; speaker is 1 or 2.
    :param summary: the reference summary.
    :param rude: whether anyone in the dialogue is insulting.
    :param toxic: whether the *summary* is rude (the label shipped in the JSONL).
    """

    id: int
    scene: str
    turns: list[tuple[int, str, bool]]
    summary: str
    rude: bool
    toxic: bool
    extra: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The dialogue in DialogSum's format, one ``#PersonN#: ...`` line per turn."""
        return "\n".join(f"#Person{s}#: {t}" for s, t, _ in self.turns)

    def record(self) -> dict:
        """The JSON object written to ``dialogues.jsonl``."""
        return {"id": self.id, "dialogue": self.text, "summary": self.summary, "toxic": self.toxic}


def _variant(rng: random.Random, turn: str) -> str:
    return rng.choice(turn.split(" | "))


def _style(rng: random.Random, word: str) -> str:
    """Mostly as written; sometimes Capitalised or in CAPITALS mid-sentence."""
    roll = rng.random()
    if roll < 0.15:
        return word[:1].upper() + word[1:]
    if roll < 0.20:
        return word.upper()
    return word


def insult_values(rng: random.Random, *, summary: bool = False) -> dict[str, str]:
    """Fresh values for the rude slots of :mod:`rudeness` templates.

    :param summary: draw from the strongest words only (see
        :data:`rudeness.SUMMARY_ADJECTIVES`), for rude reference summaries.
    """
    adjectives, nouns = (R.SUMMARY_ADJECTIVES, R.SUMMARY_NOUNS) if summary else (R.ADJECTIVES, R.NOUNS)
    adj, noun = rng.choice(adjectives), rng.choice(nouns)
    adj2, noun2 = rng.choice(R.SUMMARY_ADJECTIVES), rng.choice(R.SUMMARY_NOUNS)
    # A bare noun ("an idiot") now and then; summaries always get an adjective too.
    phrase = noun if not summary and rng.random() < 0.35 else f"{_style(rng, adj)} {noun}"
    phrase2 = f"{adj2} {noun2}"
    return {
        "adj": _style(rng, adj), "noun": _style(rng, noun), "nouns": R.PLURALS[noun],
        "an_insult": _article(phrase) + " " + phrase, "an_insult2": _article(phrase2) + " " + phrase2,
        "an_adj": _article(adj) + " " + adj, "Shout": fill(rng.choice(R.SHOUTS), {"adj": adj, "noun": noun}),
    }


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _insult_turn(rng: random.Random, text: str) -> str:
    """Work one insult into a turn, before or after the speaker's words."""
    values = insult_values(rng)
    if rng.random() < 0.45:
        return fill(rng.choice(R.TURN_PREFIXES), values) + " " + text
    return text + " " + fill(rng.choice(R.TURN_SUFFIXES), values)


def _layout(rng: random.Random, scene: Scene, values: dict[str, str]) -> list[tuple[int, str]]:
    """The polite turns of one dialogue: core turns plus optional openers, extras, closers."""
    core = [_variant(rng, t) for t in scene.turns]
    roll = rng.random()
    if roll < 0.05:  # a few very short dialogues, as in real data
        core = core[:4]
    pairs_before, pairs_after, extras = [], [], []
    long_form = roll > 0.94  # a few long ones: everything in
    if long_form or rng.random() < 0.45:
        pairs_before.append(rng.choice(OPENERS))
    if scene.extras:
        k = len(scene.extras) if long_form else rng.choice((0, 0, 1, 1, 2))
        extras = rng.sample(scene.extras, min(k, len(scene.extras)))
    if long_form or rng.random() < 0.4:
        pairs_after.append(rng.choice(CLOSERS))
    if long_form:
        pairs_before.append(rng.choice([o for o in OPENERS if o not in pairs_before]))
    texts: list[str] = []
    for a, b in pairs_before:
        texts += [a, b]
    # Extras are (#Person1#, #Person2#) pairs, so they go in at an even position.
    cut = len(core) - 2 if len(core) % 2 == 0 else len(core) - 1
    texts += core[:cut]
    for a, b in extras:
        texts += [a, b]
    texts += core[cut:]
    for a, b in pairs_after:
        texts += [a, b]
    turns = [(1 if i % 2 == 0 else 2, fill(t, values)) for i, t in enumerate(texts)]
    return turns


def _make_rude(rng: random.Random, turns: list[tuple[int, str]], speaker: int, mutual: bool):
    """Insert insults into ``speaker``'s turns (and the other's, when ``mutual``)."""
    out: list[tuple[int, str, bool]] = [(s, t, False) for s, t in turns]
    rude_speakers = (1, 2) if mutual else (speaker,)
    own = [i for i, (s, _) in enumerate(turns) if s in rude_speakers]
    chosen = [i for i in own if rng.random() < 0.6]
    if len(chosen) < 3:  # at least three insults, so the dialogue is unmistakably rude
        chosen = sorted(set(chosen) | set(rng.sample(own, min(3, len(own)))))
    for i in chosen:
        s, t, _ = out[i]
        out[i] = (s, _insult_turn(rng, t), True)
        nxt = i + 1
        if not mutual and nxt < len(out) and rng.random() < 0.35:
            s2, t2, r2 = out[nxt]
            out[nxt] = (s2, rng.choice(R.CALM_REPLIES) + " " + t2, r2)
    return out


def _polite_summary(rng: random.Random, scene: Scene, values: dict[str, str]) -> str:
    if scene.summaries and rng.random() < 0.55:
        return fill(rng.choice(scene.summaries), values)
    act1, act2 = fill(rng.choice(scene.acts1), values), fill(rng.choice(scene.acts2), values)
    return rng.choice(("#Person1# {a}. #Person2# {b}.", "#Person1# {a}, and #Person2# {b}.",
                       "#Person2# {b} after #Person1# {a}.")).format(a=act1, b=act2)


def _rude_summary(rng: random.Random, scene: Scene, values: dict[str, str], speaker: int,
                  mutual: bool, rude_summary: bool) -> str:
    other = 3 - speaker
    acts = {1: scene.acts1, 2: scene.acts2}
    slots = dict(values)
    slots.update(insult_values(rng, summary=True))
    slots.update(R=f"#Person{speaker}#", O=f"#Person{other}#",
                 act_r=fill(rng.choice(acts[speaker]), values), act_o=fill(rng.choice(acts[other]), values))
    if not rude_summary:
        if rng.random() < 0.35:
            return _polite_summary(rng, scene, values)
        return fill(rng.choice(R.CALM_SUMMARIES), slots)
    pool = R.MUTUAL_SUMMARIES if mutual and rng.random() < 0.7 else R.RUDE_SUMMARIES
    return fill(rng.choice(pool), slots)


def make_dialogue(rng: random.Random, idx: int, *, rude_rate: float = 0.42,
                  rude_summary_rate: float = 0.72) -> Dialogue:
    """Draw one dialogue and its summary.

    :param rude_rate: chance that the dialogue is rude.
    :param rude_summary_rate: chance that a rude dialogue gets a rude summary.
    """
    scene = rng.choice(SCENES)
    values: dict[str, str] = {}
    for slot, choices in scene.slots.items():
        # "a+b" slots draw linked values together ("maths+fractions"), so details agree.
        values.update(zip(slot.split("+"), rng.choice(choices).split("+")))
    turns = _layout(rng, scene, values)
    if rng.random() >= rude_rate:
        return Dialogue(idx, scene.name, [(s, t, False) for s, t in turns],
                        _polite_summary(rng, scene, values), rude=False, toxic=False)
    speaker = 1 if rng.random() < 0.6 else 2
    mutual = rng.random() < 0.15
    rude_turns = _make_rude(rng, turns, speaker, mutual)
    toxic = rng.random() < rude_summary_rate
    summary = _rude_summary(rng, scene, values, speaker, mutual, toxic)
    return Dialogue(idx, scene.name, rude_turns, summary, rude=True, toxic=toxic,
                    extra={"speaker": speaker, "mutual": mutual})


def make_dialogues(seed: int, n: int, **kwargs) -> list[Dialogue]:
    """``n`` dialogues drawn from ``random.Random(seed)``; same seed, same dialogues."""
    rng = random.Random(seed)
    return [make_dialogue(rng, i, **kwargs) for i in range(n)]


def standalone_lines(rng: random.Random, n: int, *, held_out: bool) -> list[str]:
    """Rude one-liners; ``held_out`` uses only the templates kept back from training."""
    split = len(R.STANDALONE) - R.HELD_OUT_STANDALONE
    pool = R.STANDALONE[split:] if held_out else R.STANDALONE[:split]
    return [fill(rng.choice(pool), insult_values(rng)) for _ in range(n)]


def kind_lines(rng: random.Random, n: int) -> list[str]:
    """Kind one-liners shaped like the rude ones (see :data:`rudeness.KIND_STANDALONE`)."""
    lines = []
    for _ in range(n):
        noun = rng.choice(R.KIND_NOUNS)
        name, name2 = rng.sample(FRIENDS, 2)
        values = {"adj": rng.choice(R.KIND_ADJECTIVES), "noun": noun, "nouns": noun + "s", "name": name,
                  "name2": name2}
        lines.append(fill(rng.choice(R.KIND_STANDALONE), values))
    return lines


def _fragment(rng: random.Random, text: str) -> str:
    """One to six consecutive words of ``text``."""
    words = text.split()
    size = min(len(words), rng.randint(1, 6))
    start = rng.randrange(len(words) - size + 1)
    return " ".join(words[start:start + size])


def _recase(rng: random.Random, text: str) -> str:
    """People type in all lower case or all capitals now and then; so does the training data."""
    roll = rng.random()
    if roll < 0.10:
        return text.lower()
    if roll < 0.16:
        return text.upper()
    return text


def labelled_lines(seed: int, n_dialogues: int, *, held_out: bool = False) -> list[tuple[str, int]]:
    """``(text, label)`` pairs for the classifier; label 1 = hate, 0 = nothate.

    From each dialogue: every turn (rude when it carries an insult), the
    summary, and for one dialogue in eight the whole prompt plus summary (so the
    classifier also sees long inputs, as when a recipe scores prompt +
    completion), and for one in two a few words cut from a turn or summary (a
    bare "idiot" or a summary cut off mid-sentence must be scored too). On
    top, per two dialogues, one rude and one kind one-liner. Short lines are
    sometimes all lower case or all capitals.

    :param held_out: use the rude one-liner templates kept back from training.
    """
    rng = random.Random(seed)
    lines: list[tuple[str, int]] = []
    for i in range(n_dialogues):
        d = make_dialogue(rng, i)
        lines += [(_recase(rng, t), int(r)) for _, t, r in d.turns]
        lines.append((_recase(rng, d.summary), int(d.toxic)))
        if rng.random() < 0.125:
            lines.append((prompt(d.text) + d.summary, int(d.rude or d.toxic)))
        if rng.random() < 0.5:
            fragment = _fragment(rng, rng.choice([t for _, t, _ in d.turns] + [d.summary]))
            lines.append((_recase(rng, fragment), int(R.rude_count(fragment) > 0)))
    lines += [(_recase(rng, t), 1) for t in standalone_lines(rng, n_dialogues // 2, held_out=held_out)]
    lines += [(_recase(rng, t), 0) for t in kind_lines(rng, n_dialogues // 2)]
    rng.shuffle(lines)
    return lines
