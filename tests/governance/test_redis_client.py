"""The state store's own Redis client against real redis-servers: the wire format,
pipelined calls answered in order, error replies, scripts after a script cache flush, a
frozen server (every waiting call fails within the timeout), a killed and restarted one
(the next call connects again), and AUTH and SELECT from the URL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

from aifetch.gateway.governance._redis_client import (
    RedisClient,
    ReplyError,
    encode,
    encode_parts,
    script_sha,
)
from tests.support.services import RedisServer

TIMEOUT = 0.3


@pytest.fixture
def server() -> Iterator[RedisServer]:
    started = RedisServer().start()
    try:
        yield started
    finally:
        started.close()


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    assert encode(b"SET", "ké", 5) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$1\r\n5\r\n"
    assert encode(b"PING") == b"*1\r\n$4\r\nPING\r\n"
    assert encode_parts(b"", -1) == b"$0\r\n\r\n$2\r\n-1\r\n"
    assert script_sha("return 1") == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"


async def test_concurrent_calls_share_one_connection_in_order(server: RedisServer) -> None:
    client = RedisClient(server.url, timeout=TIMEOUT)
    try:
        payloads = [f"call-{i}-" + "x" * (i % 50) for i in range(300)]
        replies = await asyncio.gather(*(client.call(encode(b"ECHO", p)) for p in payloads))
        assert replies == [p.encode() for p in payloads]
        inspect = redis.Redis.from_url(server.url)
        try:
            # This client's one connection, and the inspecting one.
            assert len(inspect.client_list()) == 2
        finally:
            inspect.close()
    finally:
        await client.aclose()


async def test_an_error_reply_is_raised_and_the_connection_goes_on(server: RedisServer) -> None:
    client = RedisClient(server.url, timeout=TIMEOUT)
    try:
        await client.call(encode(b"SET", "word", "text"))
        with pytest.raises(ReplyError, match=r"WRONGTYPE|not an integer"):
            await client.call(encode(b"INCR", "word"))
        assert await client.call(encode(b"GET", "word")) == b"text"
    finally:
        await client.aclose()


async def test_a_script_is_sent_whole_when_redis_forgot_it(server: RedisServer) -> None:
    script = "return {KEYS[1], ARGV[1] + 1}"
    client = RedisClient(server.url, timeout=TIMEOUT)
    try:
        assert await client.script(script_sha(script), script, ["k"], [41]) == [b"k", 42]
        await client.call(encode(b"SCRIPT", "FLUSH"))  # what a restart does to the cache
        assert await client.script(script_sha(script), script, ["k"], [1]) == [b"k", 2]
        # ...and the EVAL cached it again: EVALSHA alone works.
        assert await client.call(encode(b"EVALSHA", script_sha(script), 1, "k", 9)) == [b"k", 10]
        with pytest.raises(ReplyError, match="ERR"):
            await client.script(script_sha("syntax("), "syntax(", [], [])
    finally:
        await client.aclose()


async def test_a_frozen_server_fails_every_waiting_call_within_the_timeout(
    server: RedisServer,
) -> None:
    client = RedisClient(server.url, timeout=TIMEOUT)
    try:
        await client.ping()
        server.pause()
        try:
            started = time.monotonic()
            results = await asyncio.gather(
                *(client.ping() for _ in range(20)), return_exceptions=True
            )
            took = time.monotonic() - started
        finally:
            server.resume()
        assert all(isinstance(r, TimeoutError) for r in results), results
        assert TIMEOUT <= took < TIMEOUT + 0.5
        await client.ping()  # connected again by itself
    finally:
        await client.aclose()


async def test_a_killed_server_fails_calls_and_a_restarted_one_is_used_again(
    server: RedisServer,
) -> None:
    client = RedisClient(server.url, timeout=TIMEOUT)
    try:
        await client.call(encode(b"SET", "k", "before"))
        server.stop()
        with pytest.raises((ConnectionError, TimeoutError)):
            await client.ping()
        with pytest.raises(ConnectionRefusedError):  # no server to connect to
            await client.ping()
        server.start()
        assert await client.call(encode(b"GET", "k")) is None  # a new, empty server
    finally:
        await client.aclose()


async def test_auth_and_database_come_from_the_url() -> None:
    server = RedisServer(extra=("--requirepass", "s3cret-pass")).start()
    try:
        url = f"redis://:s3cret-pass@127.0.0.1:{server.port}/3"
        client = RedisClient(url, timeout=TIMEOUT)
        try:
            await client.call(encode(b"SET", "in-three", "yes"))
            assert "s3cret" not in repr(client)
        finally:
            await client.aclose()
        inspect = redis.Redis(port=server.port, password="s3cret-pass", db=3)
        try:
            assert inspect.get("in-three") == b"yes"
        finally:
            inspect.close()
        wrong = RedisClient(f"redis://:nope@127.0.0.1:{server.port}/0", timeout=TIMEOUT)
        try:
            with pytest.raises(ReplyError) as refused:
                await wrong.ping()
            assert "nope" not in str(refused.value)
        finally:
            await wrong.aclose()
    finally:
        server.close()
