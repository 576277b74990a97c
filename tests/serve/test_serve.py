#!/usr/bin/env python3
"""`mmtune serve` through the official `openai` client (issue 19), against the CLI's own answers.

Every case starts the real server on 127.0.0.1 with --port 0 (the log line names the port) and stops it
with SIGTERM (exit status 0 required). Expected texts come from `mmtune generate` / `mmtune chat` run
alone on the same prompt: the server's continuous batching must not change a greedy answer.

  test_serve.py --case text|image|workflows|errors|load --mmtune BIN --source REPO --build BUILD
"""
import argparse
import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai

ENV = dict(os.environ, OMP_NUM_THREADS="1")
SERVERS = []  # started and not yet stopped: killed when a check fails


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    for s in SERVERS:
        s.proc.kill()
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Server:
    def __init__(self, mmtune, args):
        self.proc = subprocess.Popen([mmtune, "serve", "--port", "0", *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=ENV)
        SERVERS.append(self)
        self.log = []
        port = [None]
        ready = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                m = re.search(r"listening on http://[\d.]+:(\d+)", line)
                if m:
                    port[0] = int(m.group(1))
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=drain, daemon=True)
        self.reader.start()
        ready.wait(120)
        if port[0] is None:
            self.proc.kill()
            fail("the server did not start:\n" + "\n".join(self.log[-20:]))
        self.port = port[0]
        self.base = f"http://127.0.0.1:{self.port}"

    def client(self, key="none"):
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, max_retries=0, timeout=120)

    def raw(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def stop(self):
        SERVERS.remove(self)
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("the server did not exit within 60 s of SIGTERM")
        self.reader.join(5)
        check(rc == 0, f"the server exited {rc} after SIGTERM:\n" + "\n".join(self.log[-20:]))
        return self.log


def run(cmd, stdin=None):
    # bytes, decoded here: text=True would turn a generated "\r" into "\n"
    r = subprocess.run(cmd, input=stdin.encode() if stdin else None, capture_output=True, env=ENV, timeout=300)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr.decode(errors='replace')[-2000:]}")
    return r.stdout.decode(errors="replace")


def stories(a):
    """stories260K (../shared/models, a trained model: clean text) converted into a temp directory."""
    out = os.path.join(tempfile.mkdtemp(prefix="serve-stories-"), "stories260K")
    src = os.path.join(a.shared, "models", "stories260K")
    run([sys.executable, os.path.join(a.source, "scripts", "convert_llama2c.py"), os.path.join(src, "stories260K.bin"),
         "--tokenizer", os.path.join(src, "tok512.model"), "--out", out])
    return out


def generate_text(a, model, prompt, n):
    out = run([a.mmtune, "generate", "--model", model, "--prompt", prompt, "--max-new-tokens", str(n)])
    check(out.startswith(prompt) and out.endswith("\n"), f"unexpected generate output {out!r}")
    return out[len(prompt):-1]


def chat_answer(a, config_args, message, image=None, n=16):
    cmd = [a.mmtune, "chat", *config_args, "--temperature", "0", "--max-new-tokens", str(n)]
    if image:
        cmd += ["--image", image]
    out = run(cmd, stdin=message.replace("\\", "\\\\").replace("\n", "\\n") + "\n")
    line = out.split("\n")[0]
    return line.replace("\\n", "\n").replace("\\r", "\r").replace("\\\\", "\\")


def data_url(path):
    return "data:image/png;base64," + base64.b64encode(open(path, "rb").read()).decode()


def sse(server, path, body, read_events=None):
    """POSTs `body` with stream true; returns the parsed data: events (up to read_events) and the connection."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    check(r.status == 200, f"stream status {r.status}")
    events = []
    while read_events is None or len(events) < read_events:
        line = r.fp.readline()
        if not line:
            break
        line = line.decode().strip()
        if line.startswith("data: "):
            events.append(line[6:])
            if line == "data: [DONE]":
                break
    return events, c


# ---------------------------------------------------------------------------------------------------
def case_text(a):
    model = stories(a)
    s = Server(a.mmtune, ["--model", model, "--max-batch", "4"])
    cl = s.client()
    ids = [m.id for m in cl.models.list().data]
    check(ids == ["stories260K"], f"models {ids}")
    prompts = [(p, 6 + 5 * i) for i, p in enumerate(["Once upon a time", "The cat", "Lily and Ben", "One day", "Tom was",
                                                           "The sun", "A little bird", "Mom said", "The dog ran", "Sue"])]
    expected = [generate_text(a, model, p, n) for p, n in prompts]
    # one request: the text and usage of `mmtune generate`
    r = cl.completions.create(model="stories260K", prompt=prompts[0][0], max_tokens=prompts[0][1], temperature=0)
    check(r.choices[0].text == expected[0], f"completion {r.choices[0].text!r} != generate {expected[0]!r}")
    check(r.usage.completion_tokens <= prompts[0][1] and r.usage.prompt_tokens > 0, f"usage {r.usage}")
    # ten at once through a batch of 4 (joins and leaves between steps): each as alone
    with ThreadPoolExecutor(10) as ex:
        got = list(ex.map(lambda pn: cl.completions.create(model="stories260K", prompt=pn[0], max_tokens=pn[1],
                                                            temperature=0).choices[0].text, prompts))
    for g, e, p in zip(got, expected, prompts):
        check(g == e, f"batched {p}: {g!r} != alone {e!r}")
    # streaming chat: the chunks add up to the non-streamed answer; usage in the last chunk
    msgs = [{"role": "user", "content": "Tell me a story"}]
    whole = cl.chat.completions.create(model="stories260K", messages=msgs, max_tokens=20, temperature=0)
    text, usage, finish = "", None, None
    for ch in cl.chat.completions.create(model="stories260K", messages=msgs, max_tokens=20, temperature=0, stream=True):
        if ch.choices:
            text += ch.choices[0].delta.content or ""
            finish = ch.choices[0].finish_reason or finish
        usage = ch.usage or usage
    check(text == whole.choices[0].message.content, f"stream {text!r} != {whole.choices[0].message.content!r}")
    check(usage is not None and usage.total_tokens == whole.usage.total_tokens, f"stream usage {usage}")
    check(finish == whole.choices[0].finish_reason, f"finish {finish}")
    # a client that leaves mid-stream frees its row
    events, conn = sse(s, "/v1/completions", {"model": "stories260K", "prompt": "Go", "max_tokens": 400,
                                               "temperature": 0.8, "stream": True}, read_events=2)
    conn.sock.shutdown(2)
    conn.close()
    for _ in range(100):
        st, body = s.raw("GET", "/health")
        if json.loads(body)["active"] == 0:
            break
        time.sleep(0.05)
    check(json.loads(body)["active"] == 0, f"a disconnected stream still holds its row: {body}")
    # SIGTERM with a stream running: it still ends with a final chunk and [DONE]
    got_events = []
    t = threading.Thread(target=lambda: got_events.extend(sse(s, "/v1/completions", {
        "model": "stories260K", "prompt": "Once", "max_tokens": 300, "temperature": 0.8, "stream": True})[0]))
    t.start()
    time.sleep(0.05)
    log = s.stop()
    t.join(30)
    check(got_events and got_events[-1] == "[DONE]", f"stream at shutdown ended without [DONE]: {got_events[-3:]}")
    last = json.loads(got_events[-2])
    check(last["choices"][0]["finish_reason"] in ("stop", "length") and "usage" in last, f"final chunk {last}")
    lines = [l for l in log if " request " in l and " status 200 " in l]
    check(len(lines) >= 14, f"one log line per request expected, got {len(lines)}")


def case_errors(a):
    model = stories(a)
    s = Server(a.mmtune, ["--model", model, "--max-body-mb", "1"])
    cl = s.client()

    def expect(status, method, path, body, what):
        st, data = s.raw(method, path, body)
        check(st == status, f"{what}: status {st} != {status} ({data[:200]!r})")
        err = json.loads(data)["error"]
        check(isinstance(err["message"], str) and err["message"] and "type" in err, f"{what}: error object {err}")
        return err

    expect(400, "POST", "/v1/chat/completions", "{not json", "malformed JSON")
    expect(400, "POST", "/v1/chat/completions", json.dumps({"model": "stories260K", "messages": "hi"}), "messages type")
    e = expect(400, "POST", "/v1/completions", json.dumps({"model": "stories260K", "prompt": "x", "temperature": "hot"}),
               "temperature type")
    check(e["param"] == "temperature", f"param {e}")
    expect(400, "POST", "/v1/completions", json.dumps({"model": "stories260K", "prompt": "word " * 600}), "too long")
    expect(400, "POST", "/v1/chat/completions", json.dumps({"model": "stories260K", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]}),
           "image on a text model")
    try:
        cl.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
        fail("unknown model accepted")
    except openai.NotFoundError:
        pass
    expect(413, "POST", "/v1/completions", json.dumps({"model": "stories260K", "prompt": "x" * (2 << 20)}), "body limit")
    expect(404, "GET", "/v1/nothing", None, "unknown path")
    st, data = s.raw("GET", "/health")
    check(st == 200 and json.loads(data)["status"] == "ok", "health")
    s.stop()

    # an image model refuses pictures that do not decode (the MMA tiny config)
    s = Server(a.mmtune, ["--config", os.path.join(a.source, "configs/lavin/tiny.yaml"), *lavin_overrides(a), "--name", "tiny"])
    expect(400, "POST", "/v1/chat/completions", json.dumps({"model": "tiny", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]}),
           "undecodable image")
    expect(400, "POST", "/v1/chat/completions", json.dumps({"model": "tiny", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]}),
           "a file path without --image-root")
    s.stop()

    # --api-key: 401 without or with a wrong key, served with the right one
    s = Server(a.mmtune, ["--model", model, "--api-key", "sekrit"])
    for key in ("wrong", "none"):
        try:
            s.client(key).models.list()
            fail("a wrong API key was accepted")
        except openai.AuthenticationError:
            pass
    st, _ = s.raw("GET", "/v1/models")
    check(st == 401, f"no key: {st}")
    check([m.id for m in s.client("sekrit").models.list().data] == ["stories260K"], "the right key")
    s.stop()

    # 503 when the queue is full: one row, one waiting place, 24 requests at once
    s = Server(a.mmtune, ["--model", model, "--max-batch", "1", "--max-queue", "1"])
    body = json.dumps({"model": "stories260K", "prompt": "Once", "max_tokens": 400, "temperature": 0})
    with ThreadPoolExecutor(24) as ex:
        results = list(ex.map(lambda _: s.raw("POST", "/v1/completions", body), range(24)))
    codes = sorted(st for st, _ in results)
    check(set(codes) <= {200, 503} and 200 in codes and 503 in codes, f"queue full: statuses {codes}")
    for st, data in results:
        if st == 503:
            check("error" in json.loads(data), "503 without an error object")
    s.stop()


def lavin_overrides(a):
    return [f"model.path={a.build}/tiny/llama-gqa", f"vision.path={a.build}/tiny/clip-vit",
            f"data.root={a.build}/synthetic-sqa"]


def iaa_overrides(a):
    return lavin_overrides(a) + ["data.format=scienceqa"]


def train(a, config, overrides, out):
    run([a.mmtune, "train", "--config", config, *overrides, f"output_dir={out}", "train.max_steps=3", "train.lr=0.02"])
    return out


def pictures(a, n):
    root = os.path.join(a.build, "synthetic-sqa", "images")
    found = sorted(os.path.abspath(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files if f.endswith(".png"))
    check(len(found) >= n, f"fewer than {n} pictures under {root}")
    return found[:n]


def case_image(a):
    tmp = tempfile.mkdtemp(prefix="serve-image-")
    config = os.path.join(a.source, "configs/lavin/tiny.yaml")
    ckpt = train(a, config, lavin_overrides(a), os.path.join(tmp, "run"))
    cfg_args = ["--config", config, *lavin_overrides(a), "--checkpoint", ckpt]
    imgs = pictures(a, 3)
    qs = ["Question: What is shown?\nOptions: (A) a cat (B) a dog\nAnswer:",
          "Question: Which color?\nOptions: (A) red (B) blue\nAnswer:"]
    expected_img = [chat_answer(a, cfg_args, qs[i % 2], imgs[i]) for i in range(3)]
    expected_txt = [chat_answer(a, cfg_args, q) for q in qs]
    s = Server(a.mmtune, [*cfg_args, "--name", "lavin"])
    cl = s.client()

    def ask(job):
        kind, i = job
        content = qs[i % 2] if kind == "txt" else [
            {"type": "text", "text": qs[i % 2]}, {"type": "image_url", "image_url": {"url": data_url(imgs[i])}}]
        r = cl.chat.completions.create(model="lavin", messages=[{"role": "user", "content": content}],
                                       max_tokens=16, temperature=0)
        return r.choices[0].message.content

    jobs = [("img", 0), ("txt", 0), ("img", 1), ("txt", 1), ("img", 2)]
    with ThreadPoolExecutor(5) as ex:  # pictures and text-only rows in one batch (LaVIN's modality routing)
        got = list(ex.map(ask, jobs))
    for (kind, i), g in zip(jobs, got):
        e = expected_img[i] if kind == "img" else expected_txt[i]
        check(g == e, f"{kind} {i}: served {g!r} != chat {e!r}")
    # a picture by path, only under --image-root
    s.stop()
    s = Server(a.mmtune, [*cfg_args, "--name", "lavin", "--image-root", os.path.dirname(os.path.dirname(imgs[0]))])
    r = s.client().chat.completions.create(model="lavin", max_tokens=16, temperature=0, messages=[{"role": "user", "content": [
        {"type": "text", "text": qs[0]}, {"type": "image_url", "image_url": {"url": imgs[0]}}]}])
    check(r.choices[0].message.content == expected_img[0], "image by path under --image-root")
    st, _ = s.raw("POST", "/v1/chat/completions", json.dumps({"model": "lavin", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": imgs[0] + "/../../../../etc/passwd"}}]}]}))
    check(st == 400, f"a path outside --image-root: {st}")
    s.stop()


def case_workflows(a):
    tmp = tempfile.mkdtemp(prefix="serve-iaa-")
    config = os.path.join(a.source, "configs/iaa/tiny.yaml")
    first = train(a, config, iaa_overrides(a) + ["seed=1"], os.path.join(tmp, "first"))
    second = train(a, config, iaa_overrides(a) + ["seed=2", "train.lr=0.05"], os.path.join(tmp, "second"))
    img = pictures(a, 1)[0]
    q = "What is in the picture?"
    alone = {name: chat_answer(a, ["--config", config, *iaa_overrides(a), "--checkpoint", d], q, img)
             for name, d in (("first", first), ("second", second))}
    s = Server(a.mmtune, ["--config", config, *iaa_overrides(a), "--adapter", f"first={first}",
                          "--adapter", f"second={second}"])
    cl = s.client()
    ids = sorted(m.id for m in cl.models.list().data)
    check(ids == ["first", "second", "text"], f"models {ids}")

    def ask(name):
        r = cl.chat.completions.create(model=name, max_tokens=16, temperature=0, messages=[{"role": "user", "content": [
            {"type": "text", "text": q}, {"type": "image_url", "image_url": {"url": data_url(img)}}]}])
        return r.choices[0].message.content

    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(ask, ["first", "second", "first", "second"]))
    for name, g in zip(["first", "second", "first", "second"], got):
        check(g == alone[name], f"workflow {name}: served {g!r} != alone {alone[name]!r}")
    st, _ = s.raw("POST", "/v1/chat/completions", json.dumps({"model": "text", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(img)}}]}]}))
    check(st == 400, f"a picture to the text workflow: {st}")
    s.stop()


def case_load(a):
    """64 requests from 16 concurrent clients, <= 64 tokens each: all answered, none lost, RSS stable."""
    model = stories(a)
    s = Server(a.mmtune, ["--model", model, "--max-batch", "16", "--max-queue", "64"])
    cl = s.client()

    def rss():
        with open(f"/proc/{s.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024

    def one(i):
        if i % 2:
            r = cl.completions.create(model="stories260K", prompt=f"Request {i}", max_tokens=64, temperature=0.7, seed=i)
            return r.usage.completion_tokens
        n = 0
        for ch in cl.chat.completions.create(model="stories260K", messages=[{"role": "user", "content": f"Hi {i}"}],
                                             max_tokens=64, temperature=0.7, seed=i, stream=True):
            n = ch.usage.completion_tokens if ch.usage else n
        return n

    rss_after = []
    for round_ in range(3):
        with ThreadPoolExecutor(16) as ex:
            counts = list(ex.map(one, range(64)))
        check(len(counts) == 64 and all(c >= 1 for c in counts), f"round {round_}: {counts}")
        rss_after.append(rss())
    print(f"load: 3 x 64 requests answered; RSS after each round {[r >> 20 for r in rss_after]} MiB")
    check(rss_after[2] <= rss_after[0] * 1.10 + (8 << 20), f"RSS grows: {rss_after}")
    s.stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--case", required=True, choices=["text", "image", "workflows", "errors", "load"])
    p.add_argument("--mmtune", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--build", required=True)
    p.add_argument("--shared", required=True)
    a = p.parse_args()
    globals()["case_" + a.case](a)
    print(f"serve {a.case}: ok")


if __name__ == "__main__":
    main()
