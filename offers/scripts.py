"""Lua scripts in the hot path's pipelines, sent by SHA as plain commands: a pipeline holding a
registered redis-py `Script` asks the server whether it knows it first, a round trip per
request."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from redis import Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


def run_pipelined(redis: Redis, script: Script, commands: list[tuple],
                  also: Sequence[Callable] = ()) -> list:
    """`commands` (EVALSHA of `script`, among others) in one pipelined round trip, then what
    each of `also` queues on the pipeline (reads of other owners sharing the round trip, a
    command each: their replies come last, one per callable, so `also` is a list, not a
    generator, as a retry queues them again); the script is loaded again, and the round trip
    repeated, if the server lost it (a restart, SCRIPT FLUSH)."""
    try:
        return _pipelined(redis, commands, also)
    except NoScriptError:
        redis.script_load(script.script)
        return _pipelined(redis, commands, also)


def _pipelined(redis: Redis, commands: list[tuple], also: Sequence[Callable]) -> list:
    with redis.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        for queue in also:
            queue(pipe)
        return pipe.execute()
