#!/usr/bin/env python3
"""Throughput and latency of `mmtune serve` under 1..N concurrent clients (issue 19), beside transformers
generating the same requests one at a time. Driven by scripts/bench_serve.sh; one JSON line per run.

Each client sends `--requests` completions (prompt i, max_tokens, greedy) back to back; a run's tokens/s
is the completion tokens of all requests over the run's wall time, latency is per request.
"""
import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import openai

PROMPTS = ["Once upon a time", "The cat", "Lily and Ben", "One day", "Tom was", "The sun", "A little bird", "Mom said",
           "The dog ran", "Sue", "The big tree", "In the park", "Max and Mia", "It was a", "The girl", "A boy"]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def run_clients(base, model, clients, per_client, max_tokens):
    cl = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=600)

    def client(c):
        out = []
        for r in range(per_client):
            t0 = time.perf_counter()
            resp = cl.completions.create(model=model, prompt=PROMPTS[(c * per_client + r) % len(PROMPTS)],
                                         max_tokens=max_tokens, temperature=0)
            out.append((time.perf_counter() - t0, resp.usage.completion_tokens))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        results = [x for xs in ex.map(client, range(clients)) for x in xs]
    wall = time.perf_counter() - t0
    lat = [l for l, _ in results]
    tokens = sum(n for _, n in results)
    return {"engine": "mmtune serve", "clients": clients, "requests": len(results), "completion_tokens": tokens,
            "wall_s": round(wall, 3), "tok_s": round(tokens / wall, 1), "p50_ms": round(pct(lat, 50) * 1e3, 1),
            "p99_ms": round(pct(lat, 99) * 1e3, 1)}


def run_transformers(model_dir, requests, max_tokens, threads, dtype):
    import torch
    from transformers import AutoModelForCausalLM
    from sentencepiece import SentencePieceProcessor
    torch.set_num_threads(threads)
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    sp = SentencePieceProcessor(model_file=f"{model_dir}/tokenizer.model")
    lat, tokens = [], 0
    t0 = time.perf_counter()
    for i in range(requests):
        ids = torch.tensor([[sp.bos_id()] + sp.encode(PROMPTS[i % len(PROMPTS)])])
        t = time.perf_counter()
        with torch.inference_mode():
            out = m.generate(ids, max_new_tokens=max_tokens, do_sample=False, eos_token_id=sp.eos_id(), pad_token_id=0)
        lat.append(time.perf_counter() - t)
        tokens += out.shape[1] - ids.shape[1]
    wall = time.perf_counter() - t0
    return {"engine": "transformers generate, one request at a time", "dtype": dtype, "clients": 1, "requests": requests,
            "completion_tokens": tokens, "wall_s": round(wall, 3), "tok_s": round(tokens / wall, 1),
            "p50_ms": round(pct(lat, 50) * 1e3, 1), "p99_ms": round(pct(lat, 99) * 1e3, 1)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", help="http://127.0.0.1:PORT of a running server")
    p.add_argument("--model", default="stories260K")
    p.add_argument("--clients", default="1 4 16")
    p.add_argument("--requests", type=int, default=64, help="requests per run, spread over the clients")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--transformers", help="model directory: also time transformers one request at a time")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference-dtype", default="float32", choices=["float32", "bfloat16"],
                   help="transformers' weights (bfloat16 for the 7B shape: float32 needs 27 GB)")
    a = p.parse_args()
    rows = []
    if a.base:
        run_clients(a.base, a.model, 2, 2, 8)  # warm-up
        for c in map(int, a.clients.split()):
            rows.append(run_clients(a.base, a.model, c, max(1, a.requests // c), a.max_tokens))
            print(json.dumps(rows[-1]), flush=True)
    if a.transformers:
        rows.append(run_transformers(a.transformers, a.requests, a.max_tokens, a.threads, a.reference_dtype))
        print(json.dumps(rows[-1]), flush=True)
    serve = [r for r in rows if r["engine"] == "mmtune serve"]
    if len(serve) > 1:
        print(f"[bench_serve] {serve[-1]['clients']} clients: {serve[-1]['tok_s'] / serve[0]['tok_s']:.2f}x the tokens/s "
              f"of {serve[0]['clients']}", file=sys.stderr)


if __name__ == "__main__":
    main()
