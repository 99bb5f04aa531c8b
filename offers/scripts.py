"""Lua scripts in the hot path's pipelines, sent by SHA as plain commands: a pipeline holding a
registered redis-py `Script` asks the server whether it knows it first, a round trip per
request."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from redis import Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


def run_pipelined(redis: Redis, scripts: Script | Sequence[Script], commands: list[tuple],
                  also: Sequence[Callable] = ()) -> list:
    """`commands` (EVALSHA of `scripts`, among others) in one pipelined round trip, then what
    each of `also` queues on the pipeline (reads of other owners sharing the round trip, a
    command each: their replies come last, one per callable, so `also` is a list, not a
    generator, as a retry queues them again); the scripts are loaded again, and the round trip
    repeated, if the server lost them (a restart, SCRIPT FLUSH)."""
    try:
        return _pipelined(redis, commands, also)
    except NoScriptError:
        for script in [scripts] if isinstance(scripts, Script) else scripts:
            redis.script_load(script.script)
        return _pipelined(redis, commands, also)


def _pipelined(redis: Redis, commands: list[tuple], also: Sequence[Callable]) -> list:
    with redis.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        for queue in also:
            queue(pipe)
        return pipe.execute()
