"""The texts the contract checks feed to a reward.

Small, varied dialogue-summary samples in the shape rewardkit trains on
(prompt = templated dialogue, completion = a summary, reference = a human
summary), plus the awkward inputs a policy produces sooner or later: empty
strings, very long texts and text outside ASCII.
"""

from __future__ import annotations

from rewardkit.reward import Batch

_TEMPLATE = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "

#: (dialogue, completion, reference) triples; the completions differ in
#: length, tone and overlap with the reference so that a reward gives them
#: different scores, which the order and batch-size checks rely on.
SAMPLES: tuple[tuple[str, str, str], ...] = (
    ("#Person1#: Could you help me move this table?\n#Person2#: Sure, where to?",
     "Person2 agrees to help Person1 move a table.",
     "#Person2# helps #Person1# move the table."),
    ("#Person1#: I missed the bus again.\n#Person2#: Leave home ten minutes earlier.",
     "Person1 missed the bus and Person2 suggests leaving earlier.",
     "#Person1# missed the bus; #Person2# advises leaving earlier."),
    ("#Person1#: Your report was late.\n#Person2#: Sorry, the data came in late.",
     "This is a stupid excuse and the report is late, you idiot.",
     "#Person2# apologises that the report was late because of the data."),
    ("#Person1#: What would you like for dinner?\n#Person2#: Pasta, please.",
     "Pasta.",
     "#Person2# wants pasta for dinner."),
    ("#Person1#: The printer is broken.\n#Person2#: I'll call the technician now.",
     "THE PRINTER IS BROKEN AND NOBODY CARES!!!",
     "#Person2# will call a technician to fix the printer."),
    ("#Person1#: Are you coming to the party on Friday?\n#Person2#: Yes, I'll bring a cake.",
     "Person2 will come to Friday's party and bring a cake, which Person1 is happy about because "
     "Person1 had worried that nobody would bring dessert to the party this year.",
     "#Person2# will come to the party and bring a cake."),
)

#: Words repeated to build the long input (5,000 words in all).
LONG_WORDS = 5000

NON_ASCII = (
    "Ça va très bien, merci ! Élodie a mangé une crème brûlée.",  # Latin accents
    "会議は明日の午後三時に始まります。",  # CJK (Japanese)
    "오늘 날씨가 정말 좋네요 😀🎉👍🏽",  # Hangul and emoji with a skin-tone modifier
    "مرحبا، كيف حالك اليوم؟",  # Arabic, right-to-left
    "👩‍👩‍👧 family emoji joined by zero-width joiners",
    "Zalgo: z̷̢a̶͎l̵̰g̴̱o̸̗ and a non-breaking\u00a0space",
)


def sample_batch(*, references: bool = True) -> Batch:
    """The standard batch of six varied samples.

    :param references: include the human references (pass ``False`` to
        check a reward that must cope with data without references).
    """
    prompts = [_TEMPLATE.format(dialogue=d) for d, _, _ in SAMPLES]
    completions = [c for _, c, _ in SAMPLES]
    refs = [r for _, _, r in SAMPLES] if references else None
    return Batch.from_lists(completions, prompts=prompts, references=refs)


def empty_batch(*, references: bool = True) -> Batch:
    """Empty strings: an empty completion, and a sample that is empty everywhere."""
    prompts = [_TEMPLATE.format(dialogue=SAMPLES[0][0]), ""]
    refs = [SAMPLES[0][2], ""] if references else None
    return Batch.from_lists(["", ""], prompts=prompts, references=refs)


def long_text(words: int = LONG_WORDS) -> str:
    """A text of ``words`` words, made of varied sentences (not one word repeated)."""
    vocabulary = ("the meeting moved to Thursday because the client asked for more time and "
                  "everyone agreed that the schedule was too tight for a proper review").split()
    return " ".join(vocabulary[i % len(vocabulary)] for i in range(words))


def long_batch(*, references: bool = True, words: int = LONG_WORDS) -> Batch:
    """A ``words``-word completion (and prompt) next to an ordinary sample.

    References stay short: real references are, and comparing two texts of
    thousands of words (ROUGE-L is quadratic) would test patience, not robustness.
    """
    text = long_text(words)
    prompts = [_TEMPLATE.format(dialogue=text), _TEMPLATE.format(dialogue=SAMPLES[1][0])]
    completions = [text, SAMPLES[1][1]]
    refs = [SAMPLES[0][2], SAMPLES[1][2]] if references else None
    return Batch.from_lists(completions, prompts=prompts, references=refs)


def non_ascii_batch(*, references: bool = True) -> Batch:
    """Completions, prompts and references outside ASCII: accents, CJK, emoji, RTL, combining marks."""
    prompts = [_TEMPLATE.format(dialogue=t) for t in NON_ASCII]
    refs = list(reversed(NON_ASCII)) if references else None
    return Batch.from_lists(list(NON_ASCII), prompts=prompts, references=refs)
