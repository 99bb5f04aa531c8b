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
    command each: their replies come last, one per callable). If the server lost a script (a
    restart, SCRIPT FLUSH), the scripts are loaded again and only the commands it refused are
    sent again: the others have run, and a script that appends to a log must not run twice."""
    replies = _pipelined(redis, commands, also)
    lost = [i for i, reply in enumerate(replies[:len(commands)])
            if isinstance(reply, NoScriptError)]
    if lost:
        for script in [scripts] if isinstance(scripts, Script) else scripts:
            redis.script_load(script.script)
        for i, reply in zip(lost, _pipelined(redis, [commands[i] for i in lost], ()),
                            strict=True):
            replies[i] = reply
    for number, reply in enumerate(replies, 1):
        if isinstance(reply, Exception):
            # What redis-py says of a pipeline's error when it raises it itself.
            name = commands[number - 1][0] if number <= len(commands) else "a read"
            reply.args = (f"Command # {number} ({name}) of pipeline caused error: "
                          f"{reply.args[0] if reply.args else ''}", *reply.args[1:])
            raise reply
    return replies


def _pipelined(redis: Redis, commands: list[tuple], also: Sequence[Callable]) -> list:
    with redis.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        for queue in also:
            queue(pipe)
        return pipe.execute(raise_on_error=False)
