"""Baseline for `cargo xtask bench`: transformers loading the same GGUF dequantized
to f32 (what `from_pretrained(gguf_file=...)` does), greedy decode with its KV cache.

Prints one JSON line: prefill and decode tokens/s (median of runs) and peak RSS.
"""

import json
import os
import resource
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main() -> None:
    path, prompt_json, gen, runs, threads = sys.argv[1:6]
    prompt = json.loads(prompt_json)
    gen, runs, threads = int(gen), int(runs), int(threads)
    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32)
    model.eval()
    ids = torch.tensor([prompt])
    prefill, decode = [], []
    with torch.inference_mode():
        for run in range(runs + 1):
            t = time.perf_counter()
            out = model(ids, use_cache=True)
            p = time.perf_counter() - t
            past = out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            t = time.perf_counter()
            for _ in range(gen):
                out = model(tok, past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
            d = time.perf_counter() - t
            if run > 0:
                prefill.append(len(prompt) / p)
                decode.append(gen / d)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"prefill_tokens_per_s": statistics.median(prefill),
                      "decode_tokens_per_s": statistics.median(decode),
                      "peak_rss_mib": rss}))


if __name__ == "__main__":
    main()
