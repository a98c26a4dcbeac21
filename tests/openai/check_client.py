"""The official `openai` Python package against a running TeacherLM Studio server.

Usage: python check_client.py BASE_URL MODEL
Exits non-zero with the failing check on stderr. Run by backend/tests/openai_client.rs,
which spawns the server; `cargo xtask test` installs the package into a venv.
"""

import sys

import openai
from openai import OpenAI


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key="test-key", max_retries=0)

    ids = [m.id for m in client.models.list()]
    assert model in ids, ids

    chat = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    text = chat.choices[0].message.content
    assert chat.object == "chat.completion", chat
    assert chat.choices[0].message.role == "assistant", chat
    assert text, chat
    assert chat.usage.completion_tokens > 0, chat.usage
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

    pieces = []
    finish = None
    usage = None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    assert "".join(pieces) == text, (pieces, text)
    assert len(pieces) > 1, pieces
    assert finish in ("stop", "length"), finish
    assert usage is not None and usage.completion_tokens == chat.usage.completion_tokens, usage

    completion = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=6, temperature=0, seed=3
    )
    assert completion.object == "text_completion", completion
    assert completion.choices[0].text, completion
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=model,
            prompt="The capital of France is",
            max_tokens=6,
            temperature=0,
            stream=True,
        )
        if c.choices
    )
    assert streamed == completion.choices[0].text, (streamed, completion)

    try:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
        raise AssertionError("an unknown model was accepted")
    except openai.UnprocessableEntityError as e:
        assert e.status_code == 422
        assert e.body["param"] == "model", e.body
    try:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], temperature=7
        )
        raise AssertionError("temperature 7 was accepted")
    except openai.UnprocessableEntityError as e:
        assert e.body["param"] == "temperature", e.body

    print(f"ok: {text!r}")


if __name__ == "__main__":
    main()
