"""The shape of one dialogue scene, and word lists the scenes share.

A :class:`Scene` is a small script for a two-person conversation: the turns
(each with a few interchangeable wordings), optional extra exchanges, what
each person does (for building summaries), and ready-made summaries. Slots
such as ``{city}`` are filled once per dialogue, so the dialogue and its
summary agree on the details; that is what lets a tiny model learn to copy
them.

All text in the scene modules was written for this project. Words that the
independent judge (``alt-profanity-check``) flags even in harmless use, such
as "white", "fat", "sick" or "garbage truck", are avoided in polite text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scene:
    """A script for one kind of two-person dialogue.

    :param name: short identifier, e.g. ``"hotel"``.
    :param slots: slot name -> possible values, drawn once per dialogue.
    :param turns: the core turns, alternating #Person1#, #Person2#, starting
        with #Person1#. Each entry holds variants separated by ``" | "``.
    :param extras: optional (#Person1#, #Person2#) exchanges inserted before the
        last two turns, to vary the length.
    :param acts1: what #Person1# does, as third-person verb phrases.
    :param acts2: what #Person2# does, likewise.
    :param summaries: ready-made polite summaries (one or two sentences).
    """

    name: str
    slots: dict[str, tuple[str, ...]]
    turns: tuple[str, ...]
    extras: tuple[tuple[str, str], ...] = ()
    acts1: tuple[str, ...] = ()
    acts2: tuple[str, ...] = ()
    summaries: tuple[str, ...] = field(default=())


CITIES = ("Paris", "Rome", "Boston", "Denver", "Madrid", "Chicago", "Lisbon", "Seattle", "Dublin", "Vienna",
          "Toronto", "Sydney", "Berlin", "Prague", "Oslo", "Atlanta", "Austin", "Kyoto", "Glasgow", "Lyon")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TIMES = ("nine o'clock", "ten thirty", "noon", "two o'clock", "half past four", "six o'clock",
         "seven thirty", "eight in the evening", "a quarter to five", "eleven")
SMALL_NUMBERS = ("two", "three", "four", "five", "six")
PRICES = ("15", "20", "25", "30", "40", "45", "60", "75", "80", "95", "120", "150", "200", "250")
COLOURS = ("red", "blue", "green", "grey", "yellow", "brown", "pink", "navy", "orange", "purple")
FRIENDS = ("Tom", "Anna", "Lucy", "Jack", "Maria", "David", "Sarah", "Peter", "Linda", "Kevin", "Emma",
           "Chris", "Nancy", "Bill", "Grace", "Sam", "Helen", "Mike", "Julia", "Ben")
MONTHS = ("January", "March", "April", "May", "June", "July", "September", "October", "November")

#: Opening exchanges any scene may start with.
OPENERS = (
    ("Hi, how are you today?", "I'm fine, thank you. And you?"),
    ("Good morning!", "Good morning. What can I do for you?"),
    ("Hello there.", "Hello. Nice to see you."),
    ("Excuse me, do you have a minute?", "Sure, what is it?"),
    ("Hey, got a second?", "Of course. What's up?"),
    ("Good afternoon.", "Good afternoon. How can I help?"),
)

#: Closing exchanges any scene may end with.
CLOSERS = (
    ("Thank you for your help.", "You're welcome. Have a nice day."),
    ("Thanks a lot.", "No problem at all."),
    ("Great, see you later then.", "See you."),
    ("That's all for now, thanks.", "My pleasure. Goodbye."),
    ("I appreciate it.", "Anytime."),
)
