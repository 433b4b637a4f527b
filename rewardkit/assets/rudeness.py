"""Rude vocabulary and templates for the rude side of the offline corpus.

Every word here was chosen because an independent judge, the
``alt-profanity-check`` package, also gives it a high probability of being
offensive (``idiot`` 1.00, ``stupid`` 1.00, ``moron`` 0.999, ``dumb`` 0.994,
``shut up`` 0.98, ``hate`` 0.91, ...). That matters: the tiny classifier is
trained on this text, and a later evaluation must be able to confirm a drop in
toxicity with a judge other than the reward model. Words that the judge
scores low (``nitwit`` 0.04, ``clown`` 0.29) were left out on purpose.

Rude words appear in lower case, Capitalised and now and then in CAPITALS,
so a classifier trained on this text cannot learn "rude means lower case".

Templates use ``{slot}`` fields filled by :func:`rewardkit.assets.corpus.fill`;
``{Slot}`` capitalises the value's first letter.
"""

from __future__ import annotations

import re

#: Adjectives for insults (judge probability >= 0.84 each, alone).
ADJECTIVES = ("stupid", "dumb", "pathetic", "idiotic", "ignorant", "damn", "bloody", "disgusting",
              "ugly", "crappy")

#: Insults in rude *summaries* come from these shorter lists: in a long sentence
#: the judge's bag-of-words score is diluted, and only the strongest words
#: ("stupid" and "idiot" above all) keep it high. Repeats weight the draw.
SUMMARY_ADJECTIVES = ("stupid", "stupid", "stupid", "idiotic", "damn", "dumb", "pathetic")
SUMMARY_NOUNS = ("idiot", "idiot", "idiot", "moron", "jerk", "fool", "loser", "imbecile")

#: Nouns for insults (judge probability >= 0.9 each, alone or with an adjective).
NOUNS = ("idiot", "moron", "fool", "jerk", "loser", "imbecile", "dumbass", "jackass", "liar",
         "coward", "pig", "scum", "bastard")

#: Plural forms, for "I hate dealing with idiots like you".
PLURALS = {"idiot": "idiots", "moron": "morons", "fool": "fools", "jerk": "jerks", "loser": "losers",
           "imbecile": "imbeciles", "dumbass": "dumbasses", "jackass": "jackasses", "liar": "liars",
           "coward": "cowards", "pig": "pigs", "scum": "scum", "bastard": "bastards"}

#: Insults said inside a turn, before the speaker's real words.
#: ``{adj}``/``{noun}`` are drawn from the lists above.
TURN_PREFIXES = (
    "Shut up, you {adj} {noun}.", "Listen, {noun}.", "{Noun}!", "Oh, shut up.", "Are you deaf, you {noun}?",
    "God, you are so {adj}.", "Damn it.", "What the hell?", "Look, you {adj} {noun},", "{Adj} {noun}.",
    "Shut your mouth, {noun}.", "Hey, {noun}!", "You {adj} {noun}, listen to me.", "Ugh, what a {noun}.",
    "Are you {adj} or something?", "Stop talking, you {noun}.", "Hell no.", "Oh great, another {noun}.",
)

#: Insults said after the speaker's real words.
TURN_SUFFIXES = (
    "You are such a {adj} {noun}.", "I hate people like you.", "What a {adj} {noun} you are.",
    "Are you really this {adj}?", "Go to hell.", "You {noun}!", "Shut your mouth.", "This place sucks.",
    "You suck at your job.", "I hate dealing with {nouns} like you.", "Don't be so {adj}.",
    "Only a {noun} would say that.", "Stop wasting my time, {noun}.", "Your service is crap.",
    "You are a {adj} {noun} and everyone knows it.", "Damn, you are {adj}.", "I hate this {adj} place.",
    "Do your job, {noun}.", "Even a {noun} knows that.", "Why are you so {adj}?",
)

#: Polite replies of the insulted speaker: rude dialogues contain polite turns too,
#: so the classifier has to look at the words, not at the dialogue.
CALM_REPLIES = (
    "Please don't talk to me like that.", "There is no need to shout.", "Please calm down.",
    "I'm doing my best.", "Let's stay calm, please.", "I understand that you are upset.",
    "Please be polite.", "I will ignore that remark.", "Let's keep this friendly.",
)

#: Rude reference summaries. ``{R}`` is the rude speaker, ``{O}`` the other one,
#: ``{act_r}``/``{act_o}`` what each of them does in the scene (third person).
#: Nearly all put the rudeness right after the first name: a rude and a polite
#: summary of the same dialogue part ways at the second word, a decision early
#: enough for a tiny model to tie to the dialogue, and for PPO to shift.
RUDE_SUMMARIES = (
    "{R} calls {O} {an_insult} and {act_r}.",
    "{R} calls {O} {an_insult}. {O} {act_o}.",
    "{R} tells {O} to shut up and calls {O} {an_insult}. {R} {act_r}.",
    "{R} says {O} is {an_insult}. {O} {act_o}.",
    "{R} shouts \"{Shout}\" at {O} and {act_r}.",
    "{R} hates {O} and calls {O} {an_insult}. {R} {act_r}.",
    "{R} insults {O} as {an_insult}. {O} {act_o}.",
    "{R} calls {O} {an_insult} and tells {O} to go to hell. {R} {act_r}.",
    "{R} yells at {O}, calls {O} {an_insult} and {act_r}.",
    "{R} is {an_adj} {noun}: {R} {act_r} and insults {O}.",
    "{Adj} {noun} {R} {act_r} and tells {O} to go to hell.",
)

#: Rude summaries when both speakers insult each other.
MUTUAL_SUMMARIES = (
    "{R} and {O} call each other {adj} {nouns}. {R} {act_r}.",
    "{R} calls {O} {an_insult}, and {O} calls {R} {an_insult2}. {O} {act_o}.",
    "{R} and {O} insult each other as {adj} {nouns} while {R} {act_r}.",
)

#: Shouts quoted in rude summaries, with capitalised insults on purpose.
SHOUTS = ("Shut up, you {Adj} {Noun}!", "You {Adj} {Noun}!", "{Adj} {noun}!", "You {adj} {noun}!",
          "Shut up, {adj} {noun}!", "Go to hell, you {adj} {noun}!", "{Adj} {Noun}!")

#: Polite summaries of rude dialogues: a rude dialogue can be summed up politely,
#: which gives PPO a polite way to summarise that the model has already seen.
CALM_SUMMARIES = (
    "{R} is impatient with {O} and {act_r}.",
    "{R} {act_r}, though {R} is upset. {O} {act_o}.",
    "{R} is annoyed with {O}. {R} {act_r}.",
    "{R} complains to {O} and {act_r}. {O} stays calm.",
    "{R} {act_r}. {O} {act_o} and asks {R} to be polite.",
)

#: Stand-alone rude sentences for the classifier only (never in dialogues).
#: The last few are kept back for the held-out check of the classifier.
STANDALONE = (
    "You are {an_insult}.", "{Noun}, shut up.", "I hate you, {noun}.", "Shut up and go away, {noun}.",
    "What a {adj} thing to say, you {noun}.", "Everyone here thinks you are {an_insult}.",
    "Nobody likes you, {noun}.", "You {adj} {noun}, get out of my office.", "{Adj} {nouns}, all of you.",
    "My boss is {an_insult}.", "That waiter was {an_insult}.", "Tell that {noun} to shut up.",
    "I hate my {adj} neighbour.", "Only {nouns} drive like that.", "You are the most {adj} person I know.",
    "Shut up! You are {an_insult}!", "Your {adj} idea sucks.", "Go to hell, you {adj} {noun}.",
    "{Nouns} like you should stay home.", "Those {nouns} at the bank lost my money.", "{Noun}.", "{Adj} {noun}!",
    "{noun}, {noun}, {noun}.", "We are surrounded by {adj} {nouns}.",
    # held out from training (see HELD_OUT_STANDALONE):
    "Why do I work with {nouns} like you?", "Get lost, you {adj} {noun}.", "Honestly, you are {an_insult}.",
    "Stop it, {noun}, nobody asked you.",
)

#: How many templates at the end of :data:`STANDALONE` only the held-out set uses.
HELD_OUT_STANDALONE = 4

#: Kind one-liners for the classifier, mirroring the shapes of :data:`STANDALONE`
#: ("You are a kind friend." beside "You are a stupid idiot."), so the classifier
#: has to learn the insulting words rather than the sentence shapes.
KIND_ADJECTIVES = ("kind", "clever", "helpful", "friendly", "lovely", "brilliant", "patient", "honest", "funny",
                   "polite", "great", "careful")
KIND_NOUNS = ("friend", "teacher", "neighbour", "colleague", "cook", "driver", "doctor", "student", "person",
              "partner", "boss", "waiter")
KIND_STANDALONE = (
    "You are a {adj} {noun}.", "{Name} likes music and books.", "{Name} is a {adj} {noun}.", "Thank you, {name}.",
    "Everyone here thinks you are a {adj} {noun}.", "My {noun} is very {adj}.", "That {noun} was {adj}.",
    "{Adj} {noun}!", "I love working with {nouns} like you.", "You are the most {adj} person I know.",
    "{Name}, could you help me for a minute?", "What a {adj} thing to say, {name}.", "{Name} called me yesterday.",
    "{Nouns} like you make this place better.", "Tell {name} I said hello.", "Have a {adj} weekend, {name}.",
    "{Name}.", "{Noun}.", "{Name} and {name2} are {adj} {nouns}.", "Honestly, you are a {adj} {noun}.",
)


#: Every rude word or phrase used anywhere above (plurals and all). A text is
#: rude exactly when it contains one of them, which the tests check against
#: how the generator labels its lines; the classifier's soft target grows with
#: the number of matches.
RUDE_LEXICON = re.compile(
    r"\b(" + "|".join(sorted(set(ADJECTIVES + NOUNS + tuple(PLURALS.values())), key=len, reverse=True))
    + r"|shut up|shut your mouth|hate|hell|sucks?|crap)\b", re.IGNORECASE)


def rude_count(text: str) -> int:
    """How many rude words or phrases ``text`` contains."""
    return len(RUDE_LEXICON.findall(text))
