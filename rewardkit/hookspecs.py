"""All of rewardkit's plugin hooks, in one place.

A plugin is any module that implements one or more of these hooks with
:data:`hookimpl`. Specs only ever gain arguments, so old plugins keep working
(pluggy passes a hook implementation only the arguments it names).
"""

from __future__ import annotations

import pluggy

#: Marks a function as the specification of a rewardkit hook.
hookspec = pluggy.HookspecMarker("rewardkit")
#: Marks a plugin's function as an implementation of a rewardkit hook.
hookimpl = pluggy.HookimplMarker("rewardkit")


@hookspec
def register_rewards(register):
    """Register the reward classes this plugin provides.

    Called once per plugin when the plugin manager starts. Two plugins that
    register the same reward name are an error naming both.

    :param register: call ``register(RewardClass)`` once per
        :class:`rewardkit.Reward` subclass; the class's ``name`` attribute is
        the name recipes use.
    :returns: nothing; the return value is ignored.
    """
