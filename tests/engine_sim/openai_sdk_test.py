#!/usr/bin/env python3
"""shmetrics-engine-sim driven by the official openai-python SDK, as a user would.

    openai_sdk_test.py --engine-sim PATH [--inspect PATH]

Starts real engine-sim processes (--pipeline llm, omni, diffusion; --port 0) and calls
them through `openai.OpenAI` / `openai.AsyncOpenAI`: models, completions and chat
completions (plain, streamed, include_usage, n=2, max_completion_tokens), images, errors
(NotFoundError, BadRequestError), with_raw_response, an api_key, a client timeout and a
stream closed mid-way (the server must abort the request). Every non-streamed body and
every SSE chunk is also validated strictly against the SDK's own pydantic models, and
the raw HTTP is checked with http.client and `curl -N` (Content-Type, `: keep-alive`
SSE comments, the leading whitespace of a non-streamed response, no Content-Encoding).

Exits 77 (meson: skipped) when `import openai` fails. See docs/testing.md.
"""

import argparse
import asyncio
import base64
import http.client
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback

try:
    import openai
    from openai.types import Completion, ImagesResponse, Model
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
except Exception as e:  # ImportError, or a dependency of the SDK that is missing
    print(f"SKIP: cannot import the openai SDK ({type(e).__name__}: {e}); "
          "run with PYTHONPATH=/path/to/openai-python/src")
    sys.exit(77)

import httpx
import pydantic

PYDANTIC_V2 = pydantic.VERSION.startswith("2.")
SHM_DIR = "/dev/shm"
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(what)


def strict(model_cls, data, what):
    """Validates `data` with the SDK's model, strictly (the SDK itself parses leniently,
    with construct(), so a missing required field would only show up on access)."""
    global checks
    checks += 1
    try:
        if PYDANTIC_V2:
            return model_cls.model_validate(data)
        return model_cls.parse_obj(data)
    except pydantic.ValidationError as e:
        raise AssertionError(f"{what}: {model_cls.__name__} does not validate: {e}\n"
                             f"{json.dumps(data)[:2000]}")


# ----------------------------------------------------------------------------- servers

class Sim:
    """One engine-sim process on a free port, stopped with SIGTERM (must exit 0)."""
    serial = 0

    def __init__(self, binary, *extra):
        Sim.serial += 1
        self.prefix = f"shmtest-oai-{os.getpid()}-{Sim.serial}"
        args = [binary, "--host", "127.0.0.1", "--port", "0", "--time-scale=0.02",
                "--shm.dir", SHM_DIR, "--shm.prefix", self.prefix,
                "--served-model-name", "sim-model", *extra]
        # Later flags win: extra may override --time-scale.
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on http://([0-9.]+):(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"engine-sim did not start: {line!r} ({' '.join(args)})")
        self.host, self.port = m.group(1), int(m.group(2))
        self.base_url = f"http://{self.host}:{self.port}/v1"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("engine-sim did not exit within 10 s of SIGTERM")
            check(rc == 0, f"engine-sim exit status {rc} after SIGTERM")
        self.proc.stdout.close()
        for name in os.listdir(SHM_DIR):
            if name.startswith(self.prefix + "."):
                os.unlink(os.path.join(SHM_DIR, name))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def client_for(sim, **kw):
    kw.setdefault("api_key", "sk-engine-sim-test")
    kw.setdefault("max_retries", 0)  # a retried failure would hide the first one
    kw.setdefault("timeout", 30)
    return openai.OpenAI(base_url=sim.base_url, **kw)


def abort_count(inspect_bin, sim):
    """vllm:request_success_total{finished_reason="abort"} summed over the sim's
    segments, read with shmetrics-inspect; None without the binary."""
    if not inspect_bin:
        return None
    out = subprocess.run([inspect_bin, "--shm.dir", SHM_DIR, "--shm.prefix", sim.prefix,
                          "show", "--name", "vllm:request_success_total"],
                         capture_output=True, text=True, timeout=10).stdout
    total = 0.0
    for line in out.splitlines():
        if line.startswith("vllm:request_success_total") and 'finished_reason="abort"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


# ------------------------------------------------------------------- shared field checks

def check_usage(u, what, completion_tokens=None):
    check(u is not None, f"{what}: usage is missing")
    check(isinstance(u.prompt_tokens, int) and u.prompt_tokens > 0, f"{what}: prompt_tokens")
    check(isinstance(u.completion_tokens, int), f"{what}: completion_tokens")
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"{what}: total_tokens")
    if completion_tokens is not None:
        check(u.completion_tokens == completion_tokens,
              f"{what}: completion_tokens {u.completion_tokens} != {completion_tokens}")
    if u.prompt_tokens_details is not None:
        check(isinstance(u.prompt_tokens_details.cached_tokens, int), f"{what}: cached_tokens")


def check_head(obj, object_name, id_prefix, what):
    check(obj.object == object_name, f"{what}: object {obj.object!r} != {object_name!r}")
    check(isinstance(obj.id, str) and obj.id.startswith(id_prefix), f"{what}: id {obj.id!r}")
    check(obj.model == "sim-model", f"{what}: model {obj.model!r}")
    check(isinstance(obj.created, int) and abs(obj.created - time.time()) < 300,
          f"{what}: created {obj.created!r}")


def check_chat(resp, n, what, completion_tokens=None, finish="length"):
    check_head(resp, "chat.completion", "chatcmpl-", what)
    check(resp.system_fingerprint is None or isinstance(resp.system_fingerprint, str),
          f"{what}: system_fingerprint")
    check(len(resp.choices) == n, f"{what}: {len(resp.choices)} choices, expected {n}")
    for i, ch in enumerate(resp.choices):
        check(ch.index == i, f"{what}: choice index {ch.index} != {i}")
        check(ch.message.role == "assistant", f"{what}: role {ch.message.role!r}")
        check(isinstance(ch.message.content, str) and ch.message.content,
              f"{what}: content {ch.message.content!r}")
        check(ch.message.tool_calls in (None, []), f"{what}: tool_calls")
        check(ch.finish_reason in ("stop", "length"), f"{what}: finish_reason {ch.finish_reason!r}")
        if finish:
            check(ch.finish_reason == finish, f"{what}: finish_reason {ch.finish_reason!r}")
    check_usage(resp.usage, what, completion_tokens)


def collect_chat_stream(chunks, n, what, include_usage):
    """Checks a chat stream's chunks; returns (texts per choice, usage or None)."""
    texts = [""] * n
    roles = [None] * n
    finishes = [None] * n
    usage = None
    for k, c in enumerate(chunks):
        check_head(c, "chat.completion.chunk", "chatcmpl-", f"{what} chunk {k}")
        check(c.id == chunks[0].id and c.created == chunks[0].created,
              f"{what}: id / created change within a stream")
        if not c.choices:  # the include_usage chunk, last
            check(include_usage and k == len(chunks) - 1, f"{what}: a chunk without choices")
            usage = c.usage
            continue
        check(c.usage is None, f"{what}: usage on a chunk with choices")
        for ch in c.choices:
            i = ch.index
            check(0 <= i < n, f"{what}: choice index {i}")
            check(finishes[i] is None, f"{what}: choice {i} has a chunk after its finish")
            if ch.delta.role is not None:
                check(roles[i] is None and texts[i] == "",
                      f"{what}: choice {i}: role not in its first chunk")
                roles[i] = ch.delta.role
            check(roles[i] == "assistant", f"{what}: choice {i}: first chunk has no role")
            if ch.delta.content:
                texts[i] += ch.delta.content
            if ch.finish_reason is not None:
                finishes[i] = ch.finish_reason
    for i in range(n):
        check(finishes[i] in ("stop", "length"), f"{what}: choice {i} finish {finishes[i]!r}")
        check(texts[i], f"{what}: choice {i} streamed no text")
    if include_usage:
        check(usage is not None, f"{what}: no usage chunk")
    return texts, finishes, usage


# ------------------------------------------------------------------------------ raw HTTP

def raw_post(sim, path, body, headers=None):
    """POST with http.client; returns (status, headers, body bytes as received)."""
    conn = http.client.HTTPConnection(sim.host, sim.port, timeout=30)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    conn.request("POST", path, body=json.dumps(body), headers=h)
    r = conn.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    return r.status, hdrs, data


def sse_strict(kind, raw, what):
    """Splits a raw SSE body into events; validates each data event strictly."""
    events = [e for e in raw.decode().split("\n\n") if e]
    comments = [e for e in events if e.startswith(":")]
    data = [e[len("data: "):] for e in events if e.startswith("data: ")]
    check(len(comments) + len(data) == len(events),
          f"{what}: an event that is not data or a comment")
    check(data and data[-1] == "[DONE]", f"{what}: no [DONE] at the end")
    for d in data[:-1]:
        obj = json.loads(d)
        if kind == "chat":
            strict(ChatCompletionChunk, obj, what)
        else:
            # The SDK types CompletionChoice.finish_reason as non-null, but a stream (OpenAI's
            # and vLLM's) carries null until the choice finishes: validate the rest.
            for ch in obj.get("choices", []):
                if ch.get("finish_reason") is None:
                    ch = dict(ch, finish_reason="stop")
                strict(Completion, dict(obj, choices=[ch]), what)
            if not obj.get("choices"):
                strict(Completion, obj, what)
    return comments, data


# --------------------------------------------------------------------------------- tests

def test_llm(args):
    with Sim(args.engine_sim, "--pipeline", "llm") as sim:
        client = client_for(sim)

        # models.list()
        page = client.models.list()
        check(len(page.data) == 1 and page.data[0].id == "sim-model", f"models: {page.data}")
        check(page.data[0].object == "model" and isinstance(page.data[0].owned_by, str),
              "models: object / owned_by")
        check(abs(page.data[0].created - time.time()) < 300, f"models: created {page.data[0]}")
        raw = client.models.with_raw_response.list()
        for m in json.loads(raw.text)["data"]:
            strict(Model, m, "models")
            # vLLM's ModelCard extras
            check(m["root"] and m["max_model_len"] > 0 and m["parent"] is None, f"models: {m}")
            check(len(m["permission"]) == 1 and
                  m["permission"][0]["object"] == "model_permission", f"models: {m}")

        # completions, non-streamed and streamed
        comp = client.completions.create(model="sim-model", prompt="Once upon a time",
                                         max_tokens=7, extra_body={"ignore_eos": True})
        check_head(comp, "text_completion", "cmpl-", "completion")
        check(len(comp.choices) == 1 and isinstance(comp.choices[0].text, str)
              and comp.choices[0].text, "completion text")
        check(comp.choices[0].finish_reason == "length", f"completion finish {comp.choices[0]}")
        check_usage(comp.usage, "completion", 7)
        raw = client.completions.with_raw_response.create(model="sim-model", prompt="hello",
                                                           max_tokens=3)
        strict(Completion, json.loads(raw.text), "completion")

        stream = client.completions.create(model="sim-model", prompt="stream this", max_tokens=6,
                                           stream=True, stream_options={"include_usage": True},
                                           extra_body={"ignore_eos": True})
        chunks = list(stream)
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and
                  c.choices[0].finish_reason]
        check(text and finish == ["length"], f"completion stream: {text!r} {finish}")
        check(all(c.object == "text_completion" for c in chunks), "completion stream object")
        check_usage(chunks[-1].usage, "completion stream", 6)

        # chat, non-streamed
        msgs = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
        chat = client.chat.completions.create(model="sim-model", messages=msgs, max_tokens=5,
                                              extra_body={"ignore_eos": True})
        check_chat(chat, 1, "chat", 5)
        raw = client.chat.completions.with_raw_response.create(model="sim-model", messages=msgs,
                                                                max_tokens=5)
        check(raw.http_response.status_code == 200, "with_raw_response status")
        check(raw.headers["content-type"] == "application/json",
              f"chat content-type {raw.headers['content-type']!r}")
        check("content-encoding" not in raw.headers,
              f"a compressed response ({raw.headers.get('content-encoding')})")
        strict(ChatCompletion, json.loads(raw.text), "chat")
        check_chat(raw.parse(), 1, "chat raw.parse()", finish=None)

        # n=2 and max_completion_tokens
        chat2 = client.chat.completions.create(model="sim-model", messages=msgs, n=2,
                                               max_completion_tokens=4,
                                               extra_body={"ignore_eos": True})
        check_chat(chat2, 2, "chat n=2", 8)
        mct = client.chat.completions.create(model="sim-model", messages=msgs,
                                             max_completion_tokens=3)
        check(mct.usage.completion_tokens <= 3, f"max_completion_tokens: {mct.usage}")
        check_chat(mct, 1, "chat max_completion_tokens", finish=None)

        # chat, streamed: plain, include_usage, n=2
        for n, include_usage in ((1, False), (1, True), (2, True)):
            what = f"chat stream n={n} include_usage={include_usage}"
            kw = {"stream_options": {"include_usage": True}} if include_usage else {}
            stream = client.chat.completions.create(model="sim-model", messages=msgs, n=n,
                                                    max_tokens=6, stream=True,
                                                    extra_body={"ignore_eos": True}, **kw)
            check(stream.response.headers["content-type"].startswith("text/event-stream"),
                  f"{what}: content-type {stream.response.headers['content-type']!r}")
            chunks = list(stream)
            texts, finishes, usage = collect_chat_stream(chunks, n, what, include_usage)
            check(finishes == ["length"] * n, f"{what}: {finishes}")
            if include_usage:
                check_usage(usage, what, 6 * n)

        # with a context manager, as the SDK's docs show
        with client.chat.completions.create(model="sim-model", messages=msgs, max_tokens=3,
                                            stream=True) as s:
            got = [c for c in s]
        check(got, "stream as context manager")

        # errors
        try:
            client.chat.completions.create(model="no-such-model", messages=msgs)
            check(False, "an unknown model was accepted")
        except openai.NotFoundError as e:
            check(e.status_code == 404, f"404: {e.status_code}")
            check("no-such-model" in e.message and "does not exist" in e.message, f"404: {e}")
            check(e.body["message"] == "The model `no-such-model` does not exist.",
                  f"404: {e.body}")
            check(e.type == "NotFoundError" and e.param == "model", f"404: {e.type} {e.param}")
        try:
            client.chat.completions.create(model="sim-model", messages=msgs, temperature=7)
            check(False, "temperature 7 was accepted")
        except openai.BadRequestError as e:
            check(e.status_code == 400, f"400: {e.status_code}")
            check("temperature must be a number between 0 and 2" in e.message, f"400: {e}")
            check(e.param == "temperature" and e.type == "BadRequestError", f"400: {e.body}")
        try:
            client.completions.create(model="sim-model", prompt="x", max_tokens=10 ** 6)
            check(False, "max_tokens 10**6 was accepted")
        except openai.BadRequestError as e:
            check("maximum context length" in e.message, f"400: {e}")
        try:
            client.chat.completions.create(model="sim-model", messages=msgs,
                                           stream_options={"include_usage": True})
            check(False, "stream_options without stream was accepted")
        except openai.BadRequestError as e:
            check("stream" in e.message and e.param == "stream_options", f"400: {e.body}")
        try:  # the SDK raises what an error event in a stream says
            client.chat.completions.create(model="sim-model", messages=[], stream=True)
            check(False, "empty messages accepted")
        except openai.BadRequestError as e:
            check(e.param == "messages", f"400: {e.body}")

        # the api_key goes out as a bearer token (engine-sim, like vLLM without --api-key,
        # accepts any)
        seen = []
        hc = httpx.Client(event_hooks={"request": [lambda r: seen.append(r.headers)]})
        kc = client_for(sim, api_key="sk-secret-123", http_client=hc)
        kc.chat.completions.create(model="sim-model", messages=msgs, max_tokens=2)
        check(seen and seen[0].get("authorization") == "Bearer sk-secret-123",
              f"authorization header: {seen[:1]}")
        hc.close()

        # the async client, one streamed call
        async def run_async():
            ac = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-async", max_retries=0)
            stream = await ac.chat.completions.create(
                model="sim-model", messages=msgs, max_tokens=5, stream=True,
                stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
            chunks = [c async for c in stream]
            await ac.close()
            return chunks
        chunks = asyncio.run(run_async())
        _, finishes, usage = collect_chat_stream(chunks, 1, "async stream", True)
        check_usage(usage, "async stream", 5)

        # A stream closed mid-way and a client timeout: the server aborts both requests
        # and keeps serving. 3000 tokens at --time-scale 0.02 take over a second.
        before = abort_count(args.inspect, sim)
        stream = client.chat.completions.create(model="sim-model", messages=msgs,
                                                max_tokens=3000, stream=True,
                                                extra_body={"ignore_eos": True})
        it = iter(stream)
        for _ in range(5):
            next(it)
        stream.close()
        if before is not None:
            check(wait_for(lambda: abort_count(args.inspect, sim) == before + 1),
                  f"a closed stream was not aborted ({abort_count(args.inspect, sim)})")
        tc = client.with_options(timeout=0.05)  # the server writes a space every 100 ms
        t0 = time.monotonic()
        try:
            tc.chat.completions.create(model="sim-model", messages=msgs, max_tokens=3000,
                                       extra_body={"ignore_eos": True})
            check(False, "no timeout")
        except openai.APITimeoutError:
            check(time.monotonic() - t0 < 5, "the timeout took too long")
        if before is not None:
            check(wait_for(lambda: abort_count(args.inspect, sim) == before + 2),
                  f"a timed-out request was not aborted ({abort_count(args.inspect, sim)})")
        check_chat(client.chat.completions.create(model="sim-model", messages=msgs, max_tokens=2),
                   1, "chat after aborts", finish=None)

        # raw HTTP: Content-Type, no compression even when asked (vLLM sends none), the
        # SSE framing, each chunk strict
        for kind, path in (("chat", "/v1/chat/completions"), ("completion", "/v1/completions")):
            body = ({"messages": msgs} if kind == "chat" else {"prompt": "raw"}) | {
                "max_tokens": 4, "ignore_eos": True}
            st, h, data = raw_post(sim, path, body, {"Accept-Encoding": "gzip, deflate, br"})
            check(st == 200 and h["content-type"] == "application/json", f"raw {kind}: {st} {h}")
            check("content-encoding" not in h, f"raw {kind}: compressed {h}")
            strict(ChatCompletion if kind == "chat" else Completion, json.loads(data),
                   f"raw {kind}")
            st, h, data = raw_post(sim, path, body | {"stream": True, "n": 2,
                                                     "stream_options": {"include_usage": True}},
                                   {"Accept-Encoding": "gzip, deflate, br"})
            check(st == 200 and h["content-type"] == "text/event-stream", f"raw {kind} SSE: {h}")
            check("content-encoding" not in h, f"raw {kind} SSE: compressed {h}")
            sse_strict(kind, data, f"raw {kind} SSE")


def test_slow(args):
    """At --time-scale 8 a decode step takes 160 ms: streams carry `: keep-alive`
    comments between tokens and non-streamed responses start with whitespace."""
    with Sim(args.engine_sim, "--pipeline", "llm", "--time-scale=8") as sim:
        client = client_for(sim)
        msgs = [{"role": "user", "content": "slowly"}]
        body = {"model": "sim-model", "messages": msgs, "max_tokens": 3, "ignore_eos": True}

        st, h, data = raw_post(sim, "/v1/chat/completions", body | {"stream": True})
        check(st == 200 and h["content-type"] == "text/event-stream", f"slow SSE: {h}")
        comments, events = sse_strict("chat", data, "slow SSE")
        check(comments and all(c == ": keep-alive" for c in comments),
              f"slow SSE: keep-alive comments {comments}")
        check(len(events) == 3 + 1 + 1, f"slow SSE: {len(events)} data events")

        st, h, data = raw_post(sim, "/v1/chat/completions", body)
        check(st == 200 and h["content-type"] == "application/json", f"slow JSON: {h}")
        check(h.get("transfer-encoding") == "chunked", f"slow JSON: {h}")
        check(data.startswith(b" ") and data.lstrip(b" ").startswith(b"{"),
              f"slow JSON: no leading whitespace: {data[:40]!r}")
        strict(ChatCompletion, json.loads(data), "slow JSON")

        # the SDK: its SSE decoder skips the comments, response.json() the whitespace
        chunks = list(client.chat.completions.create(model="sim-model", messages=msgs,
                                                     max_tokens=3, stream=True,
                                                     extra_body={"ignore_eos": True}))
        texts, _, _ = collect_chat_stream(chunks, 1, "slow SDK stream", False)
        check(len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 3,
              "slow SDK stream: 3 content deltas")
        raw = client.chat.completions.with_raw_response.create(model="sim-model", messages=msgs,
                                                                max_tokens=3,
                                                                extra_body={"ignore_eos": True})
        check(raw.text.startswith(" "), "slow SDK: the body has no leading whitespace")
        check_chat(raw.parse(), 1, "slow SDK", 3)

        # curl -N: unbuffered, headers and body as they come
        if shutil.which("curl"):
            out = subprocess.run(["curl", "-sN", "-D", "-", "-H", "Content-Type: application/json",
                                  "--compressed", "-d", json.dumps(body | {"stream": True}),
                                  f"http://{sim.host}:{sim.port}/v1/chat/completions"],
                                 capture_output=True, timeout=30).stdout.decode()
            head, _, sse = out.partition("\r\n\r\n")
            check(re.search(r"(?im)^content-type: text/event-stream\r?$", head), f"curl: {head}")
            check(not re.search(r"(?im)^content-encoding:", head), f"curl: {head}")
            check(": keep-alive\n\n" in sse and sse.endswith("data: [DONE]\n\n"), f"curl: {sse}")
            out = subprocess.run(["curl", "-sN", "-D", "-", "-H", "Content-Type: application/json",
                                  "--compressed", "-d", json.dumps(body),
                                  f"http://{sim.host}:{sim.port}/v1/chat/completions"],
                                 capture_output=True, timeout=30).stdout.decode()
            head, _, js = out.partition("\r\n\r\n")
            check(re.search(r"(?im)^content-type: application/json\r?$", head), f"curl: {head}")
            check(not re.search(r"(?im)^content-encoding:", head), f"curl: {head}")
            check(js.startswith(" "), f"curl: {js[:40]!r}")
            strict(ChatCompletion, json.loads(js), "curl JSON")
        else:
            print("note: no curl, its checks skipped")


def test_api_servers(args):
    """--api-server-count 2: the same calls through the API-server processes."""
    with Sim(args.engine_sim, "--pipeline", "llm", "--api-server-count", "2") as sim:
        client = client_for(sim)
        msgs = [{"role": "user", "content": "through the front"}]
        check(client.models.list().data[0].id == "sim-model", "api servers: models")
        raw = client.chat.completions.with_raw_response.create(model="sim-model", messages=msgs,
                                                                max_tokens=4,
                                                                extra_body={"ignore_eos": True})
        check(raw.headers["content-type"] == "application/json", f"api servers: {raw.headers}")
        check("content-encoding" not in raw.headers, f"api servers: {raw.headers}")
        strict(ChatCompletion, json.loads(raw.text), "api servers")
        chunks = list(client.chat.completions.create(model="sim-model", messages=msgs, n=2,
                                                     max_tokens=4, stream=True,
                                                     stream_options={"include_usage": True},
                                                     extra_body={"ignore_eos": True}))
        _, _, usage = collect_chat_stream(chunks, 2, "api servers stream", True)
        check_usage(usage, "api servers stream", 8)
        try:
            client.chat.completions.create(model="other", messages=msgs)
            check(False, "api servers: unknown model accepted")
        except openai.NotFoundError:
            pass


def test_omni(args):
    with Sim(args.engine_sim, "--pipeline", "omni") as sim:
        client = client_for(sim)
        msgs = [{"role": "user", "content": "say it out loud"}]
        raw = client.chat.completions.with_raw_response.create(
            model="sim-model", messages=msgs, max_tokens=6, modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "pcm16"}, extra_body={"ignore_eos": True})
        resp = strict(ChatCompletion, json.loads(raw.text), "omni audio")
        check_chat(resp, 1, "omni audio", 6)
        audio = resp.choices[0].message.audio
        check(audio is not None and audio.id.startswith("audio-"), f"omni audio: {audio}")
        check(isinstance(audio.expires_at, int) and audio.expires_at > time.time(),
              f"omni audio expires_at: {audio.expires_at}")
        check(audio.transcript == "", f"omni transcript {audio.transcript!r} (vLLM-Omni: empty)")
        check(isinstance(audio.data, str), "omni audio data")
        text = client.chat.completions.create(model="sim-model", messages=msgs, max_tokens=3)
        check_chat(text, 1, "omni text", finish=None)
        check(text.choices[0].message.audio is None, "omni: audio without asking")
        chunks = list(client.chat.completions.create(model="sim-model", messages=msgs,
                                                     max_tokens=3, stream=True,
                                                     stream_options={"include_usage": True}))
        collect_chat_stream(chunks, 1, "omni stream", True)


def test_diffusion(args):
    with Sim(args.engine_sim, "--pipeline", "diffusion") as sim:
        client = client_for(sim)
        check(client.models.list().data[0].id == "sim-model", "diffusion: models")
        raw = client.images.with_raw_response.generate(
            model="sim-model", prompt="a lighthouse at dusk", n=2, size="256x128",
            response_format="b64_json", extra_body={"num_inference_steps": 2})
        check(raw.headers["content-type"] == "application/json", f"images: {raw.headers}")
        strict(ImagesResponse, json.loads(raw.text), "images")
        img = raw.parse()
        check(isinstance(img.created, int) and abs(img.created - time.time()) < 300,
              "images created")
        check(len(img.data) == 2, f"images: {len(img.data)}")
        for d in img.data:
            png = base64.b64decode(d.b64_json)
            check(png[:8] == b"\x89PNG\r\n\x1a\n", "images: not a PNG")
            w, h = struct.unpack(">II", png[16:24])
            check((w, h) == (256, 128), f"images: {w}x{h}")
        img = client.images.generate(prompt="default model", size="64x64")
        check(len(img.data) == 1 and img.data[0].b64_json, "images: default n, format")
        try:
            client.images.generate(model="sim-model", prompt="x", response_format="url")
            check(False, "url accepted")
        except openai.BadRequestError as e:
            check("b64_json" in e.message and e.param == "response_format", f"images 400: {e}")
        try:
            client.images.generate(model="sim-model", prompt="x", size="1000x1000")
            check(False, "size 1000 accepted")
        except openai.BadRequestError as e:
            check(e.param == "size", f"images 400: {e.body}")
        try:
            client.chat.completions.create(model="sim-model",
                                           messages=[{"role": "user", "content": "x"}])
            check(False, "chat on diffusion accepted")
        except openai.BadRequestError as e:
            check("/v1/images/generations" in e.message, f"diffusion chat 400: {e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine-sim", required=True)
    ap.add_argument("--inspect", help="shmetrics-inspect, to check aborts in the metrics")
    ap.add_argument("only", nargs="*", help="test names (default: all)")
    args = ap.parse_args()
    print(f"openai {openai.__version__} ({os.path.dirname(openai.__file__)}), "
          f"httpx {httpx.__version__}, pydantic {pydantic.VERSION}, "
          f"python {sys.version.split()[0]}")
    tests = [test_llm, test_slow, test_api_servers, test_omni, test_diffusion]
    failed = 0
    for t in tests:
        if args.only and t.__name__ not in args.only:
            continue
        t0 = time.monotonic()
        try:
            t(args)
            print(f"ok   {t.__name__} ({time.monotonic() - t0:.2f} s)")
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__} ({time.monotonic() - t0:.2f} s)")
            traceback.print_exc()
    print(f"{checks} checks, {failed} failed test(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
