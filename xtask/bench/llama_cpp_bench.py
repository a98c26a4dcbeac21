"""Baseline for `cargo xtask bench`: llama.cpp (llama-cpp-python) on the same GGUF.

Prints one JSON line: prefill and decode tokens/s (median of runs) and peak RSS.
The prompt is the same token ids the Rust benchmark uses (passed as JSON), so both
sides do identical work: a prefill of N tokens, then greedy decode steps.
"""

import json
import os
import resource
import statistics
import sys
import time

import llama_cpp
from llama_cpp import Llama


def without_extra_buffer_types() -> None:
    """Loads models without llama.cpp's extra buffer types (AMX tiles, repacked
    weights): llama-cpp-python 0.3.36 crashes in its AMX path on some AMX CPUs,
    and `cargo xtask bench` then measures it this way rather than not at all."""
    default = llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama_model_default_params = params
    llama_cpp.llama.llama_cpp.llama_model_default_params = params


def main() -> None:
    path, prompt_json, gen, runs, threads = sys.argv[1:6]
    prompt = json.loads(prompt_json)
    gen, runs, threads = int(gen), int(runs), int(threads)
    if os.environ.get("LLAMA_CPP_NO_EXTRA_BUFFERS") == "1":
        without_extra_buffer_types()
    llm = Llama(model_path=path, n_ctx=len(prompt) + gen + 8, n_threads=threads,
                n_threads_batch=threads, n_batch=512, verbose=False, logits_all=False)
    prefill, decode = [], []
    for run in range(runs + 1):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        p = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(gen):
            tok = int(llm.scores[llm.n_tokens - 1].argmax())
            llm.eval([tok])
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
